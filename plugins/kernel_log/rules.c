/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#include "rules.h"
