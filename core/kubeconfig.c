/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include "kubeconfig.h"
