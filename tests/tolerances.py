"""Tolerances for comparing floats that BLAS computed, and why each is what it is."""

# Two BLAS kernels (or a blocked and a whole matrix product) round a float32 dot product of unit
# vectors differently in its last bits: OpenBLAS's Haswell kernel differs from the others by 1.2e-7
# on 16-d vectors; 1e-5 leaves room for 1280-d sums and a float64 reference, and is still far below
# any gap between two results that matters (cosine scores are shown to two decimals).
FLOAT32_DOT_TOLERANCE = 1e-5
