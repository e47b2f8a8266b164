// Greedy and beam-search decoding, and the cached Transformer decoder they drive.
#include "models/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "core/ops/nn.h"
#include "models/layers/attention.h"

namespace kolo::models {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

Tensor index_tensor(const std::vector<int64_t>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

std::vector<float> host_log_probs(const Tensor& lp, int64_t rows) {
  KOLO_CHECK(lp.dim() == 2 && lp.size(0) == rows, "decoding: step returned ", lp.describe(), " for ", rows, " rows");
  return lp.to_vector<float>();
}

}  // namespace

double gnmt_length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

std::vector<Hypothesis> greedy_decode(IncrementalDecoder& decoder, int64_t batch, const DecodeOptions& opt) {
  if (batch == 0) return {};
  std::vector<Hypothesis> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int64_t> last(static_cast<size_t>(batch), opt.bos_id);
  for (int64_t t = 0; t < opt.max_len; ++t) {
    const std::vector<float> lp = host_log_probs(decoder.step(index_tensor(last)), batch);
    const int64_t v = static_cast<int64_t>(lp.size()) / batch;
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      const float* row = lp.data() + b * v;
      const int64_t best = std::max_element(row, row + v) - row;
      out[b].log_prob += row[best];
      last[b] = best;
      if (best == opt.eos_id)
        done[b] = true;
      else
        out[b].tokens.push_back(best);
      all_done = all_done && done[b];
    }
    if (all_done) break;
  }
  for (auto& h : out)
    h.score = h.log_prob / gnmt_length_penalty(static_cast<int64_t>(h.tokens.size()) + 1, opt.length_penalty);
  return out;
}

std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, int64_t batch, const DecodeOptions& opt) {
  const int64_t k = opt.beam_size;
  KOLO_CHECK(k >= 1 && opt.max_len >= 1, "beam_search: beam_size ", k, " and max_len ", opt.max_len,
             " must be positive");
  // The early stop bounds a beam's best final score by its length penalty at max_len, which holds only when
  // the penalty grows with length.
  KOLO_CHECK(opt.length_penalty >= 0, "beam_search: length_penalty (alpha) ", opt.length_penalty,
             " must be >= 0");
  if (batch == 0) return {};
  {
    std::vector<int64_t> expand;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < k; ++j) expand.push_back(b);
    decoder.reorder(index_tensor(expand));
  }
  const int64_t rows = batch * k;
  // Only beam 0 is live at the start so that the first step does not pick k copies of the same token.
  std::vector<double> alive_lp(rows, kNegInf);
  for (int64_t b = 0; b < batch; ++b) alive_lp[b * k] = 0.0;
  std::vector<std::vector<int64_t>> alive_tokens(rows);
  std::vector<int64_t> last(rows, opt.bos_id);
  std::vector<std::vector<Hypothesis>> finished(batch);
  std::vector<bool> done(batch, false);
  const double best_lp_bound = gnmt_length_penalty(opt.max_len, opt.length_penalty);

  auto add_finished = [&](int64_t b, Hypothesis h) {
    auto& f = finished[b];
    f.push_back(std::move(h));
    std::sort(f.begin(), f.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    if (static_cast<int64_t>(f.size()) > k) f.resize(k);
  };

  for (int64_t t = 0; t < opt.max_len; ++t) {
    const std::vector<float> lp = host_log_probs(decoder.step(index_tensor(last)), rows);
    const int64_t v = static_cast<int64_t>(lp.size()) / rows;
    std::vector<int64_t> source(rows);
    std::vector<double> next_lp(rows, kNegInf);
    std::vector<std::vector<int64_t>> next_tokens(rows);
    std::vector<int64_t> next_last(rows, opt.eos_id);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < k; ++j) source[b * k + j] = b * k;
      if (done[b]) continue;
      // Best 2k (beam, token) continuations of this sentence.
      struct Cand {
        double lp;
        int64_t beam, token;
      };
      std::vector<Cand> cands;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t r = b * k + j;
        if (alive_lp[r] == kNegInf) continue;
        for (int64_t tok = 0; tok < v; ++tok) {
          const double s = alive_lp[r] + lp[r * v + tok];
          if (s > kNegInf) cands.push_back({s, j, tok});
        }
      }
      const size_t keep = std::min<size_t>(cands.size(), static_cast<size_t>(2 * k));
      std::partial_sort(cands.begin(), cands.begin() + keep, cands.end(),
                        [](const Cand& x, const Cand& y) { return x.lp > y.lp; });
      int64_t filled = 0;
      for (size_t c = 0; c < keep && filled < k; ++c) {
        const Cand& cand = cands[c];
        const int64_t r = b * k + cand.beam;
        if (cand.token == opt.eos_id) {
          const int64_t len = static_cast<int64_t>(alive_tokens[r].size()) + 1;
          add_finished(b, {alive_tokens[r], cand.lp, cand.lp / gnmt_length_penalty(len, opt.length_penalty)});
          continue;
        }
        const int64_t dst = b * k + filled++;
        source[dst] = r;
        next_lp[dst] = cand.lp;
        next_tokens[dst] = alive_tokens[r];
        next_tokens[dst].push_back(cand.token);
        next_last[dst] = cand.token;
      }
      // Done when the n-best list is full and no alive beam can still beat its worst entry.
      double best_possible = kNegInf;
      for (int64_t j = 0; j < k; ++j) best_possible = std::max(best_possible, next_lp[b * k + j] / best_lp_bound);
      if (filled == 0 || (static_cast<int64_t>(finished[b].size()) >= k && finished[b].back().score >= best_possible))
        done[b] = true;
    }
    alive_lp = std::move(next_lp);
    alive_tokens = std::move(next_tokens);
    last = std::move(next_last);
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    decoder.reorder(index_tensor(source));
  }
  std::vector<Hypothesis> best(batch);
  for (int64_t b = 0; b < batch; ++b) {
    // Out of length: alive beams count as hypotheses of their current length.
    if (!done[b])
      for (int64_t j = 0; j < k; ++j) {
        const int64_t r = b * k + j;
        if (alive_lp[r] == kNegInf) continue;
        const int64_t len = static_cast<int64_t>(alive_tokens[r].size());
        add_finished(b, {alive_tokens[r], alive_lp[r], alive_lp[r] / gnmt_length_penalty(len, opt.length_penalty)});
      }
    if (!finished[b].empty()) best[b] = finished[b].front();
  }
  return best;
}

TransformerDecoder::TransformerDecoder(Transformer& model, const Tensor& src)
    : model_(model), cache_(model.new_cache()) {
  memory_mask_ = model_.memory_mask(src);
  memory_ = model_.encode(src, memory_mask_);
}

// The search keeps token ids and beam indices on the host; they follow the model to its device here.
Tensor TransformerDecoder::step(const Tensor& last_tokens) {
  const Tensor ids = last_tokens.to(memory_.device());
  Tensor logits = model_.decode(ids.reshape({ids.size(0), 1}), memory_, memory_mask_, &cache_);
  return log_softmax(logits.select(1, 0), -1).to(DType::F32);
}

void TransformerDecoder::reorder(const Tensor& index_in) {
  const Tensor index = index_in.to(memory_.device());
  memory_ = gather_rows(memory_, index);
  memory_mask_ = gather_rows(memory_mask_, index);
  cache_.reorder(index);
}

std::vector<Hypothesis> translate(Transformer& model, const Tensor& src, DecodeOptions opt) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  opt.bos_id = model.config().bos_id;
  opt.eos_id = model.config().eos_id;
  TransformerDecoder decoder(model, src);
  std::vector<Hypothesis> out =
      opt.beam_size > 1 ? beam_search(decoder, src.size(0), opt) : greedy_decode(decoder, src.size(0), opt);
  model.train(was_training);
  return out;
}

}  // namespace kolo::models
