/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include "kube-client.h"
