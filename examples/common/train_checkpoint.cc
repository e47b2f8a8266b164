// TrainCheckpointer: save on rank 0, resume by broadcast.
#include "examples/common/train_checkpoint.h"

#include <bit>
#include <cstdio>
#include <map>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/io/checkpoint.h"
#include "core/util/error.h"
#include "optim/distributed_optimizer.h"

namespace kolo::examples {
namespace {

constexpr const char* kModelPrefix = "model/";
constexpr const char* kOptimPrefix = "optim/";
constexpr const char* kScalarPrefix = "optim.scalar.";
// Every rank's dropout generator states, [ranks * generators * 2] (seed, offset): ranks draw different
// numbers of counters (their batches differ in size), so rank 0's state alone cannot resume rank 1.
constexpr const char* kGeneratorsByRank = "generators.by_rank";

Tensor generator_states(const models::Module& model) {
  std::vector<int64_t> states;
  for (const auto& [name, g] : model.named_generators()) {
    states.push_back(static_cast<int64_t>(g->seed()));
    states.push_back(static_cast<int64_t>(g->offset()));
  }
  return Tensor::from_vector(states, {static_cast<int64_t>(states.size())});
}

std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

const std::string& meta(const SafeTensors& st, const std::string& key) {
  auto it = st.metadata.find(key);
  KOLO_CHECK(it != st.metadata.end(), "checkpoint: metadata lacks '", key, "'");
  return it->second;
}

void wait_all(std::vector<Handle>& handles) {
  for (Handle& h : handles) h.wait();
}

}  // namespace

TrainCheckpointer::TrainCheckpointer(Runtime& runtime, std::string dir, int keep_last)
    : runtime_(runtime), dir_(std::move(dir)), keep_last_(keep_last) {}

std::string TrainCheckpointer::save(const models::Module& model, const Optimizer& optimizer,
                                    const TrainPosition& pos, const DynamicLossScaler* scaler) const {
  if (!enabled()) return {};
  Tensor all_generators;
  if (!model.named_generators().empty())
    all_generators = runtime_.allgather_async(generator_states(model), "checkpoint.generators").output();
  if (runtime_.rank() != 0) return {};
  std::vector<std::pair<std::string, Tensor>> tensors;
  if (all_generators.defined()) tensors.emplace_back(kGeneratorsByRank, all_generators);
  for (const auto& [name, t] : model.state_dict()) tensors.emplace_back(kModelPrefix + name, t);
  const OptimizerState os = optimizer.state_dict();
  for (const auto& [name, t] : os.tensors) tensors.emplace_back(kOptimPrefix + name, t);
  std::map<std::string, std::string> md;
  for (const auto& [name, v] : os.scalars) md[kScalarPrefix + name] = exact(v);
  md["step"] = std::to_string(pos.step);
  md["loader.epoch"] = std::to_string(pos.loader.epoch);
  md["loader.index"] = std::to_string(pos.loader.index);
  md["seed"] = std::to_string(pos.seed);
  md["optimizer"] = optimizer.kind();
  md["ranks"] = std::to_string(runtime_.size());
  if (scaler) {
    md["loss_scale"] = exact(scaler->scale());
    md["loss_scale.good_steps"] = std::to_string(scaler->good_steps());
  }
  return CheckpointManager(dir_, keep_last_).save(pos.step, tensors, md);
}

void TrainCheckpointer::check_fresh_start() const {
  if (!enabled()) return;
  std::vector<int64_t> newest{-1};
  if (runtime_.rank() == 0) {
    const auto all = CheckpointManager(dir_, keep_last_).list();
    if (!all.empty()) newest[0] = all.back().first;
  }
  Tensor t = Tensor::from_vector(newest, {1});
  runtime_.broadcast_async(t, 0, "checkpoint.fresh").wait();
  const int64_t step = t.to_vector<int64_t>()[0];
  KOLO_CHECK(step < 0, "--checkpoint_dir ", dir_, " already holds checkpoints (newest: step ", step,
             "); pass --resume to continue from it, or use an empty directory");
}

std::optional<TrainPosition> TrainCheckpointer::resume(models::Module& model, Optimizer& optimizer,
                                                      uint64_t seed, DynamicLossScaler* scaler) const {
  if (!enabled()) return std::nullopt;
  NoGradGuard ng;
  // Header: found, step, loader epoch, loader index, seed (u64 carried bit-exactly in i64), loss scale
  // (f64 bits; 0: none saved), its finite-step count, whether every rank's generator states are saved
  // for this many ranks, and the rank count that wrote it (0: not recorded).
  const int64_t generator_count = static_cast<int64_t>(generator_states(model).numel()) * runtime_.size();
  Tensor by_rank = Tensor::zeros({generator_count}, DType::I64);
  std::vector<int64_t> header(9, 0);
  // Why every rank refuses a found checkpoint (empty: none): another seed orders the data differently; the
  // loader position counts this rank's batches of its shard, and the global batch (so the scaled lr) follows the
  // rank count, so another count would resume elsewhere in the data, silently.
  auto refusal = [&](const std::vector<int64_t>& hd) -> std::string {
    if (static_cast<uint64_t>(hd[4]) != seed)
      return detail::concat("--resume: the checkpoint in ", dir_, " was written with --seed ",
                            static_cast<uint64_t>(hd[4]), ", this run has --seed ", seed, " (data order would differ)");
    if (hd[8] != 0 && hd[8] != runtime_.size())
      return detail::concat("--resume: the checkpoint in ", dir_, " was written by ", hd[8], " ranks, this run has ",
                            runtime_.size(), "; resume with the same number of ranks");
    return {};
  };
  // Rank 0 reads the checkpoint; its failure (another optimizer, a state dict that does not fit the model)
  // reaches every rank through the header (found = -1), so none is left waiting in a broadcast.
  std::string failure;
  if (runtime_.rank() == 0) try {
    if (auto latest = CheckpointManager(dir_, keep_last_).load_latest()) {
      const SafeTensors& st = latest->second;
      KOLO_CHECK(meta(st, "optimizer") == optimizer.kind(), "checkpoint in ", dir_, " was written by optimizer '",
                 meta(st, "optimizer"), "', this run uses '", optimizer.kind(), "'");
      header = {1,
                std::stoll(meta(st, "step")),
                std::stoll(meta(st, "loader.epoch")),
                std::stoll(meta(st, "loader.index")),
                static_cast<int64_t>(std::stoull(meta(st, "seed"))),
                0,
                0,
                0,
                st.metadata.count("ranks") ? std::stoll(meta(st, "ranks")) : 0};
      for (const auto& [name, t] : st.tensors)
        if (name == kGeneratorsByRank && t.numel() == generator_count && generator_count > 0) {
          by_rank.copy_(t);
          header[7] = 1;
        }
      if (st.metadata.count("loss_scale")) {
        header[5] = std::bit_cast<int64_t>(std::stod(meta(st, "loss_scale")));
        header[6] = std::stoll(meta(st, "loss_scale.good_steps"));
      }
      // A checkpoint every rank will refuse below is not loaded at all.
      if (refusal(header).empty()) {
        models::StateDict sd;
        OptimizerState os;
        for (const auto& [name, t] : st.tensors) {
          if (starts_with(name, kModelPrefix)) sd[name.substr(6)] = t;
          if (starts_with(name, kOptimPrefix)) os.tensors[name.substr(6)] = t;
        }
        for (const auto& [key, v] : st.metadata)
          if (starts_with(key, kScalarPrefix)) os.scalars[key.substr(13)] = std::stod(v);
        model.load_state_dict(sd, /*strict=*/true);
        optimizer.load_state_dict(os);
      }
    }
  } catch (const std::exception& e) {
    failure = e.what();
    header.assign(9, 0);
    header[0] = -1;
  }
  Tensor h = Tensor::from_vector(header, {9});
  runtime_.broadcast_async(h, 0, "checkpoint.header").wait();
  header = h.to_vector<int64_t>();
  KOLO_CHECK(header[0] >= 0, "--resume: rank 0 could not load the newest checkpoint in ", dir_,
             runtime_.rank() == 0 ? ": " + failure : std::string(" (rank 0 reports why)"));
  if (header[0] == 0) return std::nullopt;
  // Every rank holds the header, so all of them refuse together, before any state is overwritten.
  const std::string refused = refusal(header);
  KOLO_CHECK(refused.empty(), refused);
  broadcast_module(runtime_, model, 0);
  broadcast_optimizer_state(runtime_, optimizer, 0);
  if (scaler && header[5] != 0) scaler->restore(std::bit_cast<double>(header[5]), header[6]);
  if (header[7] == 1) {
    runtime_.broadcast_async(by_rank, 0, "checkpoint.generators").wait();
    const std::vector<int64_t> v = by_rank.to_vector<int64_t>();
    const auto gens = model.named_generators();
    const size_t base = static_cast<size_t>(runtime_.rank()) * gens.size() * 2;
    for (size_t i = 0; i < gens.size(); ++i)
      gens[i].second->set_state(static_cast<uint64_t>(v[base + 2 * i]), static_cast<uint64_t>(v[base + 2 * i + 1]));
  }
  TrainPosition pos;
  pos.step = header[1];
  pos.loader = {header[2], header[3]};
  pos.seed = static_cast<uint64_t>(header[4]);
  return pos;
}

void broadcast_module(Runtime& runtime, models::Module& model, int root) {
  NoGradGuard ng;
  std::vector<Handle> handles;
  std::vector<std::pair<Tensor, Tensor>> staged;  // (live tensor, contiguous copy broadcast in its place)
  auto add = [&](const std::string& name, const Tensor& t) {
    Tensor c = t.contiguous();
    if (!c.same(t)) staged.emplace_back(t, c);
    handles.push_back(runtime.broadcast_async(c, root, "broadcast.module." + name));
  };
  for (const auto& [name, t] : model.named_parameters()) add(name, t);
  for (const auto& [name, t] : model.named_buffers()) add(name, t);
  // Dropout generators: every rank is seeded alike, so root's (seed, offset) is everyone's; after a
  // resume only root has loaded them from the checkpoint.
  const auto gens = model.named_generators();
  std::vector<int64_t> states;
  for (const auto& [name, g] : gens) {
    states.push_back(static_cast<int64_t>(g->seed()));
    states.push_back(static_cast<int64_t>(g->offset()));
  }
  Tensor packed = Tensor::from_vector(states, {static_cast<int64_t>(states.size())});
  if (!gens.empty()) handles.push_back(runtime.broadcast_async(packed, root, "broadcast.module.__generators"));
  wait_all(handles);
  for (auto& [live, copy] : staged) live.copy_(copy);
  const std::vector<int64_t> got = gens.empty() ? std::vector<int64_t>{} : packed.to_vector<int64_t>();
  for (size_t i = 0; i < gens.size(); ++i)
    gens[i].second->set_state(static_cast<uint64_t>(got[2 * i]), static_cast<uint64_t>(got[2 * i + 1]));
}

void average_buffers(Runtime& runtime, models::Module& model) {
  if (runtime.size() == 1) return;
  NoGradGuard ng;
  std::vector<Handle> handles;
  AllreduceOptions o;
  o.op = ReduceOp::Average;
  for (const auto& [name, t] : model.named_buffers()) {
    // Integer buffers (counters) stay as they are: the same on every rank.
    if (t.dtype() != DType::F32 && t.dtype() != DType::F64) continue;
    KOLO_CHECK(t.is_contiguous(), "average_buffers: buffer ", name, " is not contiguous");
    handles.push_back(runtime.allreduce_async(t, "average_buffers." + name, o));
  }
  wait_all(handles);
}

}  // namespace kolo::examples
