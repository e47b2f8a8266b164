// Module base: registration, tied parameters, modes, device/dtype moves, state dicts and the summary.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "models/layers/basic.h"
#include "models/module.h"

using namespace kolo;
using namespace kolo::models;

namespace {

// Two linears and an embedding whose weight is reused (tied) as the output projection.
class TinyNet : public Module {
 public:
  explicit TinyNet(uint64_t seed) : Module("TinyNet") {
    Generator gen(seed);
    embed_ = register_module("embed", std::make_shared<Embedding>(5, 4, 0.5, gen));
    hidden_ = register_module("hidden", std::make_shared<Linear>(4, 4, true, gen));
    auto stack = register_module("stack", std::make_shared<ModuleList>());
    stack->append(std::make_shared<LayerNorm>(4));
    counter_ = register_buffer("counter", Tensor::zeros({1}));
    tied_ = register_parameter("tied_out", embed_->weight());  // the same tensor under a second name
  }
  Tensor forward(const Tensor& ids) {
    Tensor h = relu(hidden_->forward(embed_->forward(ids)));
    return note(linear(h, tied_));
  }
  std::shared_ptr<Embedding> embed_;
  std::shared_ptr<Linear> hidden_;
  Tensor counter_, tied_;
};

}  // namespace

TEST(Module, NamesCountsAndTiedParametersOnce) {
  TinyNet net(1);
  std::vector<std::string> names;
  for (auto& [n, t] : net.named_parameters()) names.push_back(n);
  // The tied tensor is listed once, under the first name the walk reaches (own members before children's).
  EXPECT_EQ(names, (std::vector<std::string>{"tied_out", "hidden.weight", "hidden.bias", "stack.0.weight",
                                             "stack.0.bias"}));
  EXPECT_EQ(net.parameter_count(), 5 * 4 + 16 + 4 + 4 + 4);
  ASSERT_EQ(net.named_buffers().size(), 1u);
  EXPECT_EQ(net.named_buffers()[0].first, "counter");
  for (auto& p : net.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(net.named_modules().size(), 5u);  // net, embed, hidden, stack, stack.0
}

TEST(Module, RejectsDuplicateOrDottedNames) {
  class Bad : public Module {
   public:
    explicit Bad(int which) : Module("Bad") {
      register_parameter("w", Tensor::zeros({2}));
      if (which == 0) register_buffer("w", Tensor::zeros({2}));
      if (which == 1) register_parameter("a.b", Tensor::zeros({2}));
      if (which == 2) register_parameter("ids", Tensor::zeros({2}, DType::I64));
    }
  };
  EXPECT_THROW(Bad(0), Error);
  EXPECT_THROW(Bad(1), Error);
  EXPECT_THROW(Bad(2), Error);
}

TEST(Module, TrainEvalPropagatesAndZeroGradClears) {
  TinyNet net(2);
  net.eval();
  for (auto& [n, m] : net.named_modules()) EXPECT_FALSE(m->is_training()) << n;
  net.train();
  for (auto& [n, m] : net.named_modules()) EXPECT_TRUE(m->is_training()) << n;
  sum(net.forward(Tensor::from_vector<int64_t>({0, 3}, {2}))).backward();
  EXPECT_TRUE(net.hidden_->weight().grad().defined());
  net.zero_grad();
  for (auto& p : net.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, ToDTypeKeepsHandlesAndTies) {
  TinyNet net(3);
  const Tensor held = net.hidden_->weight();  // e.g. an optimizer's handle
  const std::vector<double> before = held.to_vector<double>();
  net.to(DType::F64);
  EXPECT_EQ(held.dtype(), DType::F64);
  EXPECT_EQ(held.to_vector<double>(), before);  // f32 -> f64 is exact
  EXPECT_EQ(net.tied_.dtype(), DType::F64);
  EXPECT_TRUE(net.tied_.same(net.embed_->weight()));
  EXPECT_EQ(net.counter_.dtype(), DType::F64);
  EXPECT_THROW(net.to(DType::I32), Error);
  EXPECT_EQ(net.forward(Tensor::from_vector<int64_t>({1}, {1})).dtype(), DType::F64);
}

TEST(Module, StateDictRoundTrip) {
  TinyNet a(4), b(5);
  const Tensor ids = Tensor::from_vector<int64_t>({0, 1, 2, 4}, {4});
  EXPECT_NE(a.forward(ids).to_vector<float>(), b.forward(ids).to_vector<float>());
  StateDict sd = a.state_dict();
  EXPECT_EQ(sd.size(), 6u);  // 5 unique parameters + 1 buffer
  // Through host copies, as a checkpoint would be written.
  for (auto& [n, t] : sd) t = t.to(DType::F64).clone();
  b.load_state_dict(sd);
  EXPECT_EQ(a.forward(ids).to_vector<float>(), b.forward(ids).to_vector<float>());
  EXPECT_TRUE(b.tied_.same(b.embed_->weight()));

  StateDict missing = a.state_dict();
  missing.erase("hidden.bias");
  EXPECT_THROW(b.load_state_dict(missing), Error);
  EXPECT_NO_THROW(b.load_state_dict(missing, /*strict=*/false));
  StateDict extra = a.state_dict();
  extra["nope"] = Tensor::zeros({1});
  EXPECT_THROW(b.load_state_dict(extra), Error);
  StateDict wrong = a.state_dict();
  wrong["hidden.weight"] = Tensor::zeros({4, 5});
  EXPECT_THROW(b.load_state_dict(wrong), Error);
}

TEST(Module, StateDictCarriesDropoutGeneratorsSoResumeDrawsTheSameMasks) {
  Dropout a(0.5, 21), b(0.5, 99);
  const Tensor x = Tensor::ones({64});
  a.forward(x);  // advance a's stream past its start
  const StateDict sd = a.state_dict();
  ASSERT_EQ(sd.count("rng"), 1u);
  const Tensor next_a = a.forward(x);
  b.load_state_dict(sd);
  EXPECT_EQ(b.forward(x).to_vector<float>(), next_a.to_vector<float>());
  StateDict bad = sd;
  bad["rng"] = Tensor::zeros({3}, DType::I64);
  EXPECT_THROW(b.load_state_dict(bad), Error);
}

TEST(Module, SummaryListsLayersShapesAndTotals) {
  TinyNet net(6);
  net.set_record_shapes(true);
  net.forward(Tensor::from_vector<int64_t>({0, 1, 2}, {3}));
  const std::string s = summary(net);
  EXPECT_NE(s.find("hidden (Linear)"), std::string::npos) << s;
  EXPECT_NE(s.find("[3, 4]"), std::string::npos) << s;   // hidden's output shape
  EXPECT_NE(s.find("[3, 5]"), std::string::npos) << s;   // model output
  EXPECT_NE(s.find("(tied)"), std::string::npos) << s;
  EXPECT_NE(s.find("Total params: 48"), std::string::npos) << s;
  EXPECT_EQ(with_commas(25557032), "25,557,032");
  EXPECT_EQ(with_commas(512), "512");
  EXPECT_EQ(with_commas(-1000), "-1,000");
}
