// Autograd engine: accumulation, shared (tied) parameters, hooks, no_grad, sparse gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/device/allocator.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/kernel_profiler.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
#include "core/autograd/node.h"
#include "core/tensor/tensor.h"

using namespace kolo;

TEST(Autograd, SimpleChainAndAccumulation) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  sum(x).backward();  // accumulates
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 5, 7}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, BackwardFreesSavedTensorsUnlessRetained) {
  Generator g(5);
  Tensor w = Tensor::randn({256, 256}, g).set_requires_grad(true);
  Tensor x = Tensor::randn({64, 256}, g);
  Allocator& alloc = allocator_for(Device::cpu());
  const size_t before = alloc.stats().current;
  Tensor loss = sum(square(relu(matmul(x, w))));  // saves x, w, the matmul output and the relu output
  EXPECT_GE(alloc.stats().current - before, size_t{3} * 64 * 256 * 4);
  loss.backward();
  // While `loss` (and with it the graph) is still alive, only w's gradient and the loss remain of what the
  // step allocated: the three saved [64, 256] activations are gone.
  EXPECT_LE(alloc.stats().current - before, w.grad().numel() * 4 + 4096);
  try {
    loss.backward();
    FAIL() << "a second backward through a freed graph must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }

  Tensor w2 = w.detach().set_requires_grad(true);
  Tensor loss2 = sum(square(relu(matmul(x, w2))));
  loss2.backward(Tensor(), /*retain_graph=*/true);
  const std::vector<double> once = w2.grad().to_vector<double>();
  loss2.backward();  // through the same graph again: gradients accumulate
  const std::vector<double> twice = w2.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); i += 97) EXPECT_NEAR(twice[i], 2 * once[i], 1e-6 * (1 + std::abs(once[i])));
  EXPECT_EQ(once, w.grad().to_vector<double>());
}

TEST(Autograd, SharedParameterAccumulatesBothUses) {
  // Tied weights: the same leaf used twice gets the sum of both gradients, and its hook fires once.
  Tensor w = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2}).set_requires_grad(true);
  int fired = 0;
  w.register_grad_ready_hook([&](Tensor& g) {
    ++fired;
    EXPECT_EQ(g.shape(), (Shape{2, 2}));
  });
  Tensor x = Tensor::from_vector<double>({1, 1}, {1, 2});
  Tensor h = matmul(x, w);                 // use 1
  Tensor o = matmul(h, w.transpose(0, 1));  // use 2
  sum(o).backward();
  EXPECT_EQ(fired, 1);
  // With x = 1: sum(o) = sum_j c_j^2 where c_j is column j's sum of W, so dL/dW_kj = 2 c_j.
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{8, 12, 8, 12}));
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = Tensor::ones({2}, DType::F64).set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard g;
    y = mul(x, x);
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(y.backward(Tensor::ones({2}, DType::F64)), Error);
}

TEST(Autograd, HooksFireInReverseLayerOrder) {
  // Later layers' gradients become final first: the property that lets allreduce overlap backward.
  Tensor w1 = Tensor::full({2, 2}, 0.5, DType::F64).set_requires_grad(true);
  Tensor w2 = Tensor::full({2, 2}, 0.5, DType::F64).set_requires_grad(true);
  std::vector<int> order;
  w1.register_grad_ready_hook([&](Tensor&) { order.push_back(1); });
  w2.register_grad_ready_hook([&](Tensor&) { order.push_back(2); });
  Tensor x = Tensor::ones({3, 2}, DType::F64);
  sum(relu(matmul(relu(matmul(x, w1)), w2))).backward();
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

// A row gather whose backward is row-sparse, like an embedding lookup.
static Tensor gather_rows(const Tensor& w, const std::vector<int64_t>& rows) {
  std::vector<Tensor> picked;
  {
    NoGradGuard ng;
    for (int64_t r : rows) picked.push_back(w.slice(0, r, r + 1));
  }
  Tensor out = cat(picked, 0);
  Tensor idx = Tensor::from_vector<int64_t>(rows, {static_cast<int64_t>(rows.size())});
  const Shape ws = w.shape();
  autograd::record("gather_rows", {w}, {&out}, [idx, ws](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {Tensor::sparse_rows(idx, g[0].contiguous(), ws)};
  });
  return out;
}

TEST(Autograd, SparseMeetsDenseOnATiedParameter) {
  for (bool keep_sparse : {false, true}) {
    Tensor w = Tensor::ones({5, 2}).set_requires_grad(true);
    w.set_keep_sparse_grad(keep_sparse);
    Tensor y = add(sum(gather_rows(w, {1, 3, 1})), sum(mul(w, Tensor::full({5, 2}, 2.0))));
    y.backward();
    Tensor g = w.grad();
    // TensorFlow semantics keep IndexedSlices: 5 dense rows + 3 looked-up rows.
    EXPECT_EQ(g.is_sparse(), keep_sparse);
    if (keep_sparse) EXPECT_EQ(g.sparse_indices().numel(), 8);
    EXPECT_EQ(g.to_dense().to_vector<float>(), (std::vector<float>{2, 2, 4, 4, 2, 2, 3, 3, 2, 2}));
  }
}

TEST(Autograd, PurelySparseGradientStaysSparse) {
  Tensor w = Tensor::ones({4, 3}).set_requires_grad(true);
  sum(gather_rows(w, {0, 2})).backward();
  ASSERT_TRUE(w.grad().is_sparse());
  sum(gather_rows(w, {2})).backward();  // second pass concatenates rows
  EXPECT_EQ(w.grad().sparse_indices().numel(), 3);
  EXPECT_EQ(w.grad().to_dense().to_vector<float>(), (std::vector<float>{1, 1, 1, 0, 0, 0, 2, 2, 2, 0, 0, 0}));
}

// A node that can sum into its input's earlier gradient (record_into): it gets that gradient only when no one
// else holds it, and the sum it returns becomes the input's gradient.
TEST(Autograd, SumsIntoAnEarlierGradientOnlyWhenExclusive) {
  for (bool shared : {false, true}) {
    Tensor x = Tensor::from_vector<double>({1, 2, 3}, {3}).set_requires_grad(true);
    Tensor h = x * 2.0;
    Tensor k = x * 5.0;  // made before the probe, so its backward runs after the probe's
    bool offered = false;
    // Created first, so it runs after the consumers below in the backward pass.
    Tensor probe = h.detach().clone();
    autograd::record_into("probe", {h}, {&probe}, {0}, {},
                          [&offered](const std::vector<Tensor>& g, const std::vector<Tensor>& into) {
                            offered = into[0].defined();
                            if (!offered) return std::vector<Tensor>{g[0].clone()};
                            Tensor acc = into[0];
                            add_(acc, g[0]);
                            return std::vector<Tensor>{acc};
                          });
    Tensor loss;
    if (shared) {
      // One gradient tensor handed to both h and k: summing into it in place would change k's gradient too.
      Tensor both = h.detach().clone();
      autograd::record("fork", {h, k}, {&both},
                       [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0], g[0]}; });
      loss = add(sum(probe), sum(both));
    } else {
      loss = add(add(sum(probe), sum(h * 3.0)), sum(k));
    }
    loss.backward();
    EXPECT_EQ(offered, !shared);
    // d/dx: 2 * (1 + 3) + 5 = 13 without sharing; 2 * (1 + 1) + 5 = 9 through the fork.
    const double want = shared ? 9.0 : 13.0;
    EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{want, want, want})) << (shared ? "shared" : "exclusive");
  }
}

// Parameters whose gradient slots are bound (as an optimizer's flat buffer binds them) get their gradients
// written by the op into the slot itself where the parameter has one use in the graph (Node::writes_into):
// the slot starts as NaN, so a slot only partly written, or summed into, shows. A parameter used twice gets
// the sum through the usual path, also in its slot; a second backward pass adds to it.
TEST(Autograd, ParameterGradientsAreWrittenIntoTheirEmptySlots) {
  Generator gen(7);
  Tensor x = Tensor::uniform({2, 5, 6, 3}, -1, 1, gen, DType::F64);
  Tensor w0 = Tensor::uniform({4, 3, 3, 3}, -0.5, 0.5, gen, DType::F64);
  Tensor b0 = Tensor::uniform({4}, -0.5, 0.5, gen, DType::F64);
  Tensor g0 = Tensor::uniform({4}, 0.5, 1.5, gen, DType::F64), h0 = Tensor::uniform({4}, -0.5, 0.5, gen, DType::F64);
  Tensor ln_w0 = Tensor::uniform({4}, 0.5, 1.5, gen, DType::F64);
  Tensor ln_b0 = Tensor::uniform({4}, -0.5, 0.5, gen, DType::F64);
  Tensor fc0 = Tensor::uniform({5, 4}, -0.5, 0.5, gen, DType::F64);
  Tensor fcb0 = Tensor::uniform({5}, -0.5, 0.5, gen, DType::F64);
  const std::vector<Tensor> init{w0, b0, g0, h0, ln_w0, ln_b0, fc0, fcb0};
  // Runs the network once (twice with `passes` 2) and returns the parameters; `bind` binds the slots first,
  // `shared` applies the convolution weight twice. `copies`: the copy kernels it ran.
  int64_t copies = 0;
  auto run = [&](bool bind, bool shared, int passes, Tensor* flat_out) {
    std::vector<Tensor> p;
    int64_t total = 0;
    for (const Tensor& t : init) {
      p.push_back(t.clone().set_requires_grad(true));
      total += t.numel();
    }
    Tensor flat = Tensor::full({total}, std::nan(""), DType::F64);
    if (bind) {
      int64_t off = 0;
      for (Tensor& t : p) {
        t.set_grad_slot(flat.slice(0, off, off + t.numel()).view(t.shape()));
        off += t.numel();
      }
    }
    KernelProfiler::start();
    for (int pass = 0; pass < passes; ++pass) {
      Conv2dOptions o;
      o.padding = {1, 1};
      o.channels_last = true;
      Tensor h = conv2d(x, p[0], p[1], o);
      if (shared) h = conv2d(x, p[0], p[1], o) * h;
      Tensor rm = Tensor::zeros({4}, DType::F64), rv = Tensor::ones({4}, DType::F64);
      h = batch_norm(h, p[2], p[3], rm, rv, true, 0.1, 1e-5, true);
      h = layer_norm(h, p[4], p[5]);
      Tensor y = linear(h, p[6], p[7]);
      sum(y * y).backward();
    }
    copies = 0;
    for (const KernelStat& k : KernelProfiler::stop())
      if (k.name == "copy") copies += k.calls;
    if (flat_out) *flat_out = flat;
    return p;
  };
  const char* names[] = {"conv w", "conv b", "bn w", "bn b", "ln w", "ln b", "fc w", "fc b"};
  int64_t copies_single = 0, copies_shared = 0;
  for (bool shared : {false, true})
    for (int passes : {1, 2}) {
      const std::vector<Tensor> want = run(false, shared, passes, nullptr);
      Tensor flat;
      const std::vector<Tensor> got = run(true, shared, passes, &flat);
      if (passes == 1) (shared ? copies_shared : copies_single) = copies;
      const auto* base = static_cast<const char*>(flat.data_ptr());
      const auto* end = base + flat.nbytes();
      for (size_t i = 0; i < got.size(); ++i) {
        const std::string what =
            std::string(names[i]) + (shared ? " shared" : "") + " passes " + std::to_string(passes);
        ASSERT_TRUE(got[i].grad().defined()) << what;
        const auto* ptr = static_cast<const char*>(got[i].grad().data_ptr());
        EXPECT_TRUE(ptr >= base && ptr < end) << what << ": the gradient is not in its slot";
        const std::vector<double> a = got[i].grad().to_vector<double>(), b = want[i].grad().to_vector<double>();
        ASSERT_EQ(a.size(), b.size()) << what;
        for (size_t k = 0; k < a.size(); ++k)
          EXPECT_NEAR(a[k], b[k], 1e-12 * (1 + std::abs(b[k]))) << what << " [" << k << "]";
      }
    }
  // The write path was taken: used twice, the convolution's weight and bias gradients are summed and then
  // copied into their slots; used once they are written there (the rest of the two runs is the same).
  EXPECT_EQ(copies_shared - copies_single, 2);
}
