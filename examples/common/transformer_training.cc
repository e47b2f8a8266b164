// run_transformer: the train_transformer loop (corpus, BPE, token batches, DistributedOptimizer with the
// tied embedding's sparse gradient, warmup schedules, checkpoints, BLEU on held-out sentences).
#include "examples/common/transformer_training.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/data/bpe.h"
#include "core/data/text_corpus.h"
#include "core/data/token_loader.h"
#include "core/util/error.h"
#include "examples/common/loss_log.h"
#include "examples/common/run_setup.h"
#include "examples/common/step_profile.h"
#include "examples/common/step_timeline.h"
#include "examples/common/throughput.h"
#include "examples/common/train_checkpoint.h"
#include "models/bleu.h"
#include "models/decoding.h"
#include "models/transformer.h"
#include "optim/distributed_optimizer.h"

namespace kolo::examples {
namespace {

constexpr uint64_t kSplitSeed = 20261123;  // held-out split, independent of --seed

// Training and held-out token pairs plus, for text tasks, the tokenizer and the raw held-out references.
struct Corpus {
  std::vector<data::TokenPair> train, test;
  std::vector<std::string> test_refs;  // text tasks: raw target sentences
  std::unique_ptr<data::BpeTokenizer> bpe;
  int64_t vocab = 0;
};

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

data::BpeTokenizer learn_or_load_bpe(Runtime& rt, const TransformerRunOptions& o,
                                     const std::vector<data::SentencePair>& train, std::ostream* log) {
  if (!o.bpe_vocab.empty() && std::filesystem::exists(o.bpe_vocab)) {
    rt.barrier_async().wait();  // every rank passes here together whichever branch it takes
    data::BpeTokenizer bpe = data::BpeTokenizer::load(o.bpe_vocab);
    if (log)
      *log << "BPE: loaded " << o.bpe_vocab << " (" << bpe.num_merges() << " merges, vocabulary " << bpe.vocab_size()
           << "); --bpe_size applies only when it is learned: delete the file to learn it again\n";
    return bpe;
  }
  std::vector<std::string> texts;
  for (const auto& p : train) {
    texts.push_back(p.src);
    texts.push_back(p.tgt);
  }
  // Every rank learns the same merges (training is deterministic); rank 0 alone writes the cache.
  data::BpeTokenizer bpe = data::BpeTokenizer::train(texts, {.vocab_size = o.bpe_size, .min_frequency = 2});
  if (log) *log << "BPE: learned " << bpe.num_merges() << " merges, vocabulary " << bpe.vocab_size() << "\n";
  if (!o.bpe_vocab.empty() && rt.rank() == 0) bpe.save(o.bpe_vocab);
  rt.barrier_async().wait();
  return bpe;
}

Corpus load_corpus(Runtime& rt, const TransformerRunOptions& o, std::ostream* log) {
  Corpus c;
  KOLO_CHECK(o.beam_size >= 1, "--beam_size ", o.beam_size, " must be at least 1 (1: greedy)");
  KOLO_CHECK(o.length_penalty >= 0, "--length_penalty ", o.length_penalty, " must be >= 0");
  if (o.dataset == "synthetic" || o.dataset == "copy" || o.dataset == "reverse") {
    KOLO_CHECK(o.test_sentences > 0, "--test_sentences ", o.test_sentences, " must be positive");
    const auto task = o.dataset == "copy"      ? data::SyntheticTask::kCopy
                      : o.dataset == "reverse" ? data::SyntheticTask::kReverse
                                               : data::SyntheticTask::kRandom;
    c.train = data::synthetic_token_pairs(o.train_sentences, o.vocab, o.min_len, o.max_len, task, o.seed + 1);
    // A different seed: held-out sequences are (with overwhelming probability) unseen in training.
    c.test = data::synthetic_token_pairs(o.test_sentences, o.vocab, o.min_len, o.max_len, task, kSplitSeed);
    c.vocab = o.vocab;
    return c;
  }
  std::vector<data::SentencePair> pairs;
  if (o.dataset == "de_en") {
    pairs = data::read_ding_sentences(o.data_path.empty() ? data::kDingDeEnPath : o.data_path);
  } else if (o.dataset == "tsv") {
    KOLO_CHECK(!o.data_path.empty(), "--dataset tsv needs --data_path");
    pairs = data::read_tsv_pairs(o.data_path);
  } else {
    KOLO_FAIL("--dataset '", o.dataset, "': expected synthetic, copy, reverse, de_en or tsv");
  }
  KOLO_CHECK(o.test_sentences > 0 && o.test_sentences < static_cast<int64_t>(pairs.size()), "--test_sentences ",
             o.test_sentences, " of ", pairs.size(), " sentence pairs");
  auto [train, test] = data::split_pairs(pairs, o.test_sentences, kSplitSeed);
  if (log) *log << "Corpus: " << pairs.size() << " sentence pairs, " << test.size() << " held out\n";
  c.bpe = std::make_unique<data::BpeTokenizer>(learn_or_load_bpe(rt, o, train, log));
  c.train = data::tokenize_pairs(train, *c.bpe, *c.bpe);
  c.test = data::tokenize_pairs(test, *c.bpe, *c.bpe);
  for (const auto& p : test) c.test_refs.push_back(p.tgt);
  c.vocab = c.bpe->vocab_size();
  return c;
}

models::TransformerConfig model_config(const TransformerRunOptions& o, int64_t vocab) {
  models::TransformerConfig cfg;
  if (o.model == "base") {
    cfg = models::transformer_base(vocab);
  } else if (o.model == "big") {
    cfg = models::transformer_big(vocab);
  } else if (o.model == "tiny") {
    cfg.vocab_size = vocab;
    cfg.d_model = 64;
    cfg.ffn_dim = 128;
    cfg.heads = 4;
    cfg.encoder_layers = cfg.decoder_layers = 2;
    cfg.dropout = 0.0;
  } else {
    KOLO_FAIL("--model '", o.model, "': expected base, big or tiny");
  }
  if (o.dropout >= 0) cfg.dropout = o.dropout;
  cfg.pre_norm = o.pre_norm;
  cfg.seed = o.seed;
  cfg.pad_id = data::BpeTokenizer::kPad;
  cfg.bos_id = data::BpeTokenizer::kBos;
  cfg.eos_id = data::BpeTokenizer::kEos;
  return cfg;
}

// Held-out BLEU over all ranks: rank r decodes sentences r, r + size, ...; the n-gram statistics are
// summed across ranks (BLEU statistics are additive) and scored once.
double evaluate_bleu(Runtime& rt, models::Transformer& model, const Corpus& c, const TransformerRunOptions& o,
                     Device device, std::ostream* log) {
  NoGradGuard ng;
  std::vector<int64_t> mine;
  for (int64_t i = rt.rank(); i < static_cast<int64_t>(c.test.size()); i += rt.size()) mine.push_back(i);
  // Similar lengths together so that batches carry little padding.
  std::stable_sort(mine.begin(), mine.end(),
                   [&](int64_t a, int64_t b) { return c.test[a].src.size() < c.test[b].src.size(); });
  const bool text = c.bpe != nullptr;
  BleuStats stats;
  int64_t shown = 0;
  data::TokenLoaderOptions lo;
  constexpr size_t kDecodeBatch = 64;
  for (size_t begin = 0; begin < mine.size(); begin += kDecodeBatch) {
    const std::vector<int64_t> ids(mine.begin() + begin, mine.begin() + std::min(mine.size(), begin + kDecodeBatch));
    data::TokenBatch batch = data::make_token_batch(c.test, ids, lo);
    models::DecodeOptions d;
    d.beam_size = o.beam_size;
    d.length_penalty = o.length_penalty;
    d.max_len = batch.src.size(1) * 3 / 2 + 10;
    const std::vector<models::Hypothesis> hyps = models::translate(model, batch.src.to(device), d);
    for (size_t k = 0; k < ids.size(); ++k) {
      std::vector<int32_t> out(hyps[k].tokens.begin(), hyps[k].tokens.end());
      const std::string hyp = text ? c.bpe->decode(out) : join_ids(out);
      const std::string ref = text ? c.test_refs[ids[k]] : join_ids(c.test[ids[k]].tgt);
      stats += segment_stats(hyp, {ref}, text ? BleuTokenize::k13a : BleuTokenize::kNone);
      if (log && shown < o.show_translations) {
        const std::string src = text ? c.bpe->decode(c.test[ids[k]].src) : join_ids(c.test[ids[k]].src);
        *log << "  src: " << src << "\n  ref: " << ref << "\n  hyp: " << hyp << "\n";
        ++shown;
      }
    }
  }
  std::vector<int64_t> counts = stats.to_counts();
  std::vector<double> as_f64(counts.begin(), counts.end());  // exact below 2^53
  Tensor t = Tensor::from_vector(as_f64, {static_cast<int64_t>(as_f64.size())});
  AllreduceOptions sum;
  sum.op = ReduceOp::Sum;
  rt.allreduce_async(t, "eval.bleu_stats", sum).wait();
  const std::vector<double> total = t.to_vector<double>();
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = static_cast<int64_t>(std::llround(total[i]));
  return bleu_from_stats(BleuStats::from_counts(counts)).score;
}

}  // namespace

TransformerRunResult run_transformer(Runtime& rt, const TransformerRunOptions& o) {
  std::ostream* log = o.print && rt.rank() == 0 ? &std::cout : nullptr;
  const Device device = select_device(o.device, rt);
  KOLO_CHECK(o.steps > 0 || o.epochs > 0, "give --steps or --epochs");
  Corpus corpus = load_corpus(rt, o, log);

  const models::TransformerConfig cfg = model_config(o, corpus.vocab);
  models::Transformer model(cfg);
  if (o.summary && log) {
    NoGradGuard ng;
    model.eval();
    model.set_record_shapes(true);
    model.forward(Tensor::full({1, 16}, 4, DType::I64), Tensor::full({1, 16}, 4, DType::I64));
    model.set_record_shapes(false);
    model.train();
    *log << "transformer " << o.model << " (vocab " << cfg.vocab_size << ")\n" << models::summary(model);
  }
  model.to(device);
  const DType dtype = model_dtype(o.precision);
  model.cast_parameters(dtype);  // bf16/fp16: the optimizer below keeps the f32 masters

  std::vector<NamedParameter> params;
  std::string embedding_name;
  for (auto& [name, t] : model.named_parameters()) {
    params.push_back({name, t});
    if (t.same(model.embedding_weight())) embedding_name = name;
  }
  OptimizerFlags of;
  of.name = "adam";
  of.lr = o.lr;
  of.beta1 = o.beta1;
  of.beta2 = o.beta2;
  of.eps = o.eps;
  of.weight_decay = o.weight_decay;
  std::unique_ptr<Optimizer> inner = make_optimizer(params, of);
  inner->set_clip_grad_norm(o.clip_norm);
  // The tied embedding: its lookup gradient is row-sparse and meets the output projection's dense one.
  // Kept sparse it is allgathered (TensorFlow's default); --sparse_as_dense allreduces it densified.
  Tensor embedding = model.embedding_weight();
  embedding.set_keep_sparse_grad(true);
  DistributedOptimizerOptions dopts;
  dopts.sparse_as_dense = o.sparse_as_dense;
  dopts.sparse_params = {embedding_name};
  DistributedOptimizer opt(*inner, rt, dopts);
  broadcast_module(rt, model, 0);
  inner->reload_master_weights();  // the masters follow the broadcast values
  PrecisionStep precision(o.precision);

  data::TokenLoaderOptions lo;
  lo.max_tokens = o.tokens_per_rank;
  lo.shard = {rt.rank(), rt.size(), o.seed, true, data::ShardMode::kEven};
  auto train = std::make_shared<const std::vector<data::TokenPair>>(std::move(corpus.train));
  data::TokenLoader loader(train, lo);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  KOLO_CHECK(steps_per_epoch > 0, "rank ", rt.rank(), " gets no batch of ", o.tokens_per_rank, " tokens");
  const int64_t total_steps = o.steps > 0 ? o.steps : static_cast<int64_t>(std::llround(o.epochs * steps_per_epoch));

  KOLO_CHECK(total_steps > 0, "--epochs ", o.epochs, " is less than one step of ", steps_per_epoch, " per epoch");
  // goyal's epochs of images do not apply to token batches.
  KOLO_CHECK(o.lr_schedule != "goyal",
             "--lr_schedule goyal is for images; expected inverse_sqrt, noam, constant or cosine");
  ScheduleFlags sf;
  sf.name = o.lr_schedule;
  sf.peak = o.lr;
  sf.warmup_steps = o.warmup_steps;
  sf.total_steps = total_steps;
  sf.d_model = cfg.d_model;
  LrSchedulePtr schedule = make_schedule(sf);

  TrainCheckpointer ckpt(rt, o.checkpoint_dir);
  if (!o.resume) ckpt.check_fresh_start();
  int64_t step = o.resume ? ckpt.resume_run(model, *inner, loader, o.seed, precision.loss_scaler(), log) : 0;
  if (log) {
    *log << "Model: transformer " << o.model << " (" << models::with_commas(model.parameter_count())
         << " parameters, d_model " << cfg.d_model << ", " << (cfg.pre_norm ? "pre" : "post") << "-norm)\n"
         << "Dataset: " << o.dataset << " (" << train->size() << " training pairs, vocabulary " << corpus.vocab
         << ", " << loader.num_filtered() << " pairs over the batch limit dropped)\n"
         << "Batching: " << o.tokens_per_rank << " padded tokens per rank, " << steps_per_epoch
         << " batches per rank per epoch\n"
         << "Ranks: " << rt.size() << " (" << rt.backend_name() << "), device " << device.str() << ", "
         << precision_banner(o.precision, precision.loss_scale()) << "\n"
         << "Optimizer: adam (" << o.beta1 << ", " << o.beta2 << ", eps " << o.eps << "), lr "
         << schedule->describe() << ", label smoothing " << o.label_smoothing
         << (o.sparse_as_dense ? ", sparse_as_dense" : ", sparse embedding gradients") << "\n"
         << "Steps: " << total_steps << "\n";
  }

  TransformerRunResult result;
  ThroughputMeter meter("tokens", rt.size(), std::min<int64_t>(10, (total_steps - step) / 5), device);
  if (log) meter.print_header(*log);
  LossLog losses;
  StepProfile profile(step, total_steps, device);
  StepTimeline timeline(rt, device);
  precision.set_phase_marker([&timeline](const char* phase) { timeline.mark(phase); });
  while (step < total_steps) {
    profile.before_step(step);
    std::optional<data::TokenBatch> batch = loader.next();
    if (!batch) continue;
    // The schedule counts updates applied (the optimizer's step count, checkpointed with it): an fp16 step skipped
    // for overflow does not use up warmup. Update k+1 runs at schedule(k), as fairseq's and Hugging Face's.
    inner->set_lr((*schedule)(inner->step_count()));
    meter.start_step();
    opt.zero_grad();
    timeline.mark("FORWARD");
    Tensor logits = model.forward(batch->src.to(device), batch->tgt_in.to(device));
    // f32 whatever the model dtype: cross_entropy computes and returns half logits' loss in f32.
    Tensor loss = models::label_smoothed_loss(logits, batch->tgt_out.to(device), cfg.pad_id, o.label_smoothing);
    precision.backward_and_step(loss, opt);
    losses.add(loss);
    timeline.end_step();
    meter.end_step(batch->tgt_tokens);
    ++step;
    if (o.display_every > 0 && (step % o.display_every == 0 || step == total_steps)) {
      const double avg = metric_average(rt, losses.interval_mean(), "train.loss");
      if (log) meter.print_interval(*log, step, avg, total_steps);
      if (!std::isfinite(avg)) {  // every rank sees the same average, so all stop together
        result.diverged = true;
        if (log) *log << "training diverged at step " << step << " (loss " << avg << ")\n";
        break;
      }
    }
    if (ckpt.enabled() && o.checkpoint_every > 0 && step % o.checkpoint_every == 0)
      ckpt.save(model, *inner, {step, loader.state(), o.seed}, precision.loss_scaler());
  }
  meter.drain([&] { synchronize_device(device); });
  profile.finish(log);
  result.losses = losses.all();
  if (ckpt.enabled() && !result.diverged && (o.checkpoint_every <= 0 || step % o.checkpoint_every != 0))
    ckpt.save(model, *inner, {step, loader.state(), o.seed}, precision.loss_scaler());
  result.steps = step;
  result.skipped_steps = precision.skipped_steps();
  if (log && o.precision == Precision::F16)
    *log << "fp16: " << precision.skipped_steps() << " steps skipped for overflow, final loss scale "
         << precision.loss_scale() << "\n";
  const double global_tokens = metric_average(rt, static_cast<double>(meter.measured_local_items()), "train.tokens") * rt.size();
  result.tokens_per_sec = meter.total_rate(static_cast<int64_t>(std::llround(global_tokens)));
  // A diverged run has no throughput to report (scripts read the total line as a good run's figure).
  if (log && !result.diverged) meter.print_total(*log, result.tokens_per_sec);
  if (log) print_device_memory(*log, device);
  if (!result.diverged) {
    result.bleu = evaluate_bleu(rt, model, corpus, o, device, log);
    model.train();
    if (log) {
      const std::string how = o.beam_size > 1 ? "beam " + std::to_string(o.beam_size) : "greedy";
      char line[128];
      std::snprintf(line, sizeof line, "BLEU (%s, %zu held-out sentences, %s): %.2f\n",
                    corpus.bpe ? "sacreBLEU 13a" : "token ids", corpus.test.size(), how.c_str(), result.bleu);
      *log << line << std::flush;
    }
  }
  return result;
}

}  // namespace kolo::examples
