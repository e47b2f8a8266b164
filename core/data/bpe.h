// Byte-pair-encoding subword tokenizer learned by kolo: train on text, encode/decode, save/load merges.
//
// Text is split on whitespace; each word starts with "▁" (U+2581, as SentencePiece does) so decoding
// restores single spaces between words. The base alphabet is every UTF-8 character of the training text;
// training then repeatedly merges the most frequent adjacent pair (ties: the pair of smaller ids) until
// the vocabulary reaches `vocab_size` or no pair occurs `min_frequency` times. Encoding applies merges in
// the order they were learnt; characters never seen in training become <unk>.
// Ids 0..3 are <pad>, <s>, </s>, <unk>.
//
// File format (text): "kolo-bpe 1", the number of characters, one character per line, the number of
// merges, then one merge per line as "left_id right_id" (the merged piece gets the next id).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kolo::data {

class BpeTokenizer {
 public:
  static constexpr int32_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3;
  static constexpr int32_t kNumSpecial = 4;

  struct TrainOptions {
    int64_t vocab_size = 8000;
    int64_t min_frequency = 2;
  };

  static BpeTokenizer train(const std::vector<std::string>& texts, TrainOptions options);
  static BpeTokenizer load(const std::string& path);
  void save(const std::string& path) const;

  std::vector<int32_t> encode(std::string_view text) const;
  // Skips <pad>, <s>, </s>; <unk> decodes as "⁇".
  std::string decode(const std::vector<int32_t>& ids) const;
  // The subword strings of `text` (for inspection and tests).
  std::vector<std::string> encode_pieces(std::string_view text) const;

  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  int64_t num_merges() const { return static_cast<int64_t>(merges_.size()); }
  const std::string& piece(int32_t id) const;

 private:
  void add_piece(const std::string& piece);
  void add_merge(int32_t left, int32_t right);
  std::vector<int32_t> encode_word(std::string_view word) const;

  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int32_t> char_ids_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::unordered_map<uint64_t, int32_t> merge_rank_;  // (left << 32 | right) -> rank
  int64_t num_chars_ = 0;
};

}  // namespace kolo::data
