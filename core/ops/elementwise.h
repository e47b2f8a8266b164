// Differentiable elementwise ops with NumPy broadcasting, and in-place helpers for optimizers.
#pragma once

#include "core/tensor/tensor.h"

namespace kolo {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor scale(const Tensor& x, double s);             // x * s
Tensor add_scalar(const Tensor& x, double s);        // x + s
Tensor affine(const Tensor& x, double s, double t);  // x * s + t

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact (erf) form, as torch.nn.GELU()
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor reciprocal(const Tensor& x);

// Sums `g` over broadcast dimensions so that it has `shape` (the backward of broadcasting).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

// In place, never recorded by autograd: y += alpha * x; y *= s.
void add_(Tensor& y, const Tensor& x, double alpha = 1.0);
void scale_(Tensor& y, double s);
bool all_finite(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& a, double s) { return scale(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace kolo
