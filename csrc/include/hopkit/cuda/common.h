// Host-side facts shared by the CUDA entry points (no CUDA headers needed).
#pragma once

// Value dtype codes passed from Python: hopkit::cuda::DType in hopkit/codes.h
// (generated from python/hopkit/codes.py).
#include "hopkit/codes.h"
