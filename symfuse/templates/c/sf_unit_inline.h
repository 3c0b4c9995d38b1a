/* What a generated C unit includes when there is no prebuilt runtime library
 * (a compiler without -aux-info, such as clang): the whole runtime, inline.
 * With the library, the unit includes sf_unit.h from the library's build
 * directory instead (c_runtime.unit_prelude), which declares it. */
#include <stdint.h>
#include <math.h>
#include <tgmath.h>
#include "kernel.h"
#include "runtime.h"
