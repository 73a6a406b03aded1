// Runtime CPU dispatch. SIMD kernel files (HOPKIT_SIMD_SOURCES) are compiled
// once per ISA with HOPKIT_ISA set to baseline / avx2 / avx512; each puts its
// definitions in namespace hopkit::<isa>. HOPKIT_DISPATCH calls the best
// variant this CPU supports (override with HOPKIT_ISA=baseline|avx2|avx512).
#pragma once
#include <string>

namespace hopkit {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };
Isa active_isa();              // chosen once, at first use
std::string isa_name(Isa isa);
std::string compiled_isas();   // e.g. "baseline,avx2,avx512"

}  // namespace hopkit

// Declare `decl` (a declaration using no namespace) in every ISA namespace.
#define HOPKIT_DECLARE_ISAS(decl) \
  namespace baseline { decl }     \
  namespace avx2 { decl }         \
  namespace avx512 { decl }

#if defined(HOPKIT_HAVE_ISA_avx512)
#define HOPKIT_CASE_AVX512(...) case ::hopkit::Isa::avx512: return ::hopkit::avx512::__VA_ARGS__;
#else
#define HOPKIT_CASE_AVX512(...)
#endif
#if defined(HOPKIT_HAVE_ISA_avx2)
#define HOPKIT_CASE_AVX2(...) case ::hopkit::Isa::avx2: return ::hopkit::avx2::__VA_ARGS__;
#else
#define HOPKIT_CASE_AVX2(...)
#endif

// Usage: HOPKIT_DISPATCH(spmm_forward<float, int32_t>(args));
#define HOPKIT_DISPATCH(...)                         \
  do {                                               \
    switch (::hopkit::active_isa()) {                \
      HOPKIT_CASE_AVX512(__VA_ARGS__)                \
      HOPKIT_CASE_AVX2(__VA_ARGS__)                  \
      default: return ::hopkit::baseline::__VA_ARGS__; \
    }                                                \
  } while (0)
