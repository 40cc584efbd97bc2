/* SPDX-License-Identifier: MIT */
/* STUB: being written. */
#pragma once
