// Stands in for CUDA's cuda_runtime.h when the kernels are built for the CPU: see cuda_on_cpu.h.
#include "cuda_on_cpu.h"
