// How many threads a device task computes with: the threading policy of the
// emulated device (README, "Threads").
//
// Device work runs ATen's CPU kernels, which parallelise with OpenMP: each
// stream's device thread owns a team, as the host thread running CPU eager
// code owns one. A parallel region needs a second core, and on a machine with
// few cores the host thread, busy issuing the next ops, holds it; the team's
// worker then spins after the region (libgomp: about 3 ms), so the host and
// the device thread share the remaining core. In a loop that waits for the
// device every step, steps stalled for scheduler time slices (30-50 ms).
//
// The rule, decided from the work's size and dtype, never from timing:
//  - Work whose result does not depend on the number of threads runs on the
//    device thread alone when its estimated one-core time is below
//    SUNRISE_SERIAL_US (default 100 µs): a region then costs more than it can
//    save. That is matrix products in the range where MKL's bits are the same
//    with one thread or two (at most 4 rows, or at most 2^20 multiply-adds),
//    flash attention, row-wise kernels whose rows are computed alike on any
//    thread (log-softmax, softmax over the last dimension, layer norm's
//    forward, NLL's backward, fused Adam(W)), and elementwise
//    kernels where each thread's share starts at a multiple of 128 elements.
//  - Everything else uses the team CPU eager would use, so results are CPU
//    eager's bits whatever the setting. Reductions split their input by thread
//    count (sum, mean, norm, var, ...); so do elementwise kernels split
//    elsewhere, whose chunk tails take the scalar path (silu: one element in
//    100,000 differs in its last bit), and softmax.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <initializer_list>

namespace torch_sunrise::aten {

// Elementwise work over these tensors (inputs, then outputs), by its bytes;
// false unless every operand is a scalar or contiguous with the output's
// size, and every team size splits it at multiples of 128 elements (where a
// vectorised loop changes vectors whatever the dtype).
bool serial_elementwise(std::initializer_list<const at::Tensor*> tensors);

// Work whose rows (or elements) are computed alike whichever thread has them,
// streaming these tensors (or lists of them) through a core: log-softmax,
// softmax over the last dimension, layer norm's forward, fused Adam(W).
bool serial_rows(std::initializer_list<const at::Tensor*> tensors);
bool serial_rows(std::initializer_list<at::TensorList> lists);

// The matrix product a @ b (b may be a vector; leading dimensions of a are
// batch or rows). False outside the range where the thread count leaves the
// bits unchanged.
bool serial_product(const at::Tensor& a, const at::Tensor& b);

// Flash attention of query {..., L, E} over key {..., S, E}, computing
// `products` matrix products of that size (forward 2: Q K^T and P V; backward
// 5). Its kernel splits the work by batch, head and query block, each block
// computed by one thread, so the thread count leaves the bits unchanged;
// except in float32 with one query per head (decoding), where CPU eager's two
// threads can differ from one in the last bit: the one exception to the rule,
// kept because a team for that small work made decoding several times slower.
bool serial_attention(const at::Tensor& query, const at::Tensor& key, int products);

// One row times a matrix (decoding's products: a layer's weight streamed once
// per token) is bound by memory bandwidth, which MKL's team does not raise
// (one or two threads take the same time). In a graph's replay, when the
// product gets a team (serial_product false), its columns are split between
// the team's threads instead, each computing `part(first_column, columns)`.
// Only there: in eager work the host thread is issuing the next ops on the
// other core, and a second thread of the device's competes with it (decoding
// got slower, README "Threads"). A float32 product of
// one row computes each output element alike whatever column slice it is in
// (checked over shapes and both layouts of the matrix; with 2 or 3 rows and a
// very wide matrix it is not, hence one row), so the bits are CPU eager's.
// False, having done nothing, for any other product.
bool split_matvec(const at::Tensor& a, const at::Tensor& b, const std::function<void(int64_t, int64_t)>& part);

}  // namespace torch_sunrise::aten
