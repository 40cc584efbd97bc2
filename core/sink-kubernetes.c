/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include "sink-kubernetes.h"
