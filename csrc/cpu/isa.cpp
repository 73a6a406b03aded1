// Picks the SIMD kernel variant once per process.
#include "hopkit/isa.h"

#include <cstdlib>
#include <cstring>

namespace hopkit {

static Isa detect() {
  Isa best = Isa::baseline;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
#if defined(HOPKIT_HAVE_ISA_avx2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
#endif
#if defined(HOPKIT_HAVE_ISA_avx512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    best = Isa::avx512;
#endif
#endif
  // HOPKIT_ISA may only lower the choice, never raise it past the CPU.
  if (const char* env = std::getenv("HOPKIT_ISA")) {
    Isa want = best;
    if (!std::strcmp(env, "baseline")) want = Isa::baseline;
    else if (!std::strcmp(env, "avx2")) want = Isa::avx2;
    else if (!std::strcmp(env, "avx512")) want = Isa::avx512;
    if (int(want) < int(best)) best = want;
  }
  return best;
}

Isa active_isa() {
  static const Isa isa = detect();
  return isa;
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

std::string compiled_isas() {
#ifdef HOPKIT_BUILD_ISAS
  return HOPKIT_BUILD_ISAS;
#else
  return "baseline";
#endif
}

}  // namespace hopkit
