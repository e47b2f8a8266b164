// BPE training with incrementally maintained pair counts (a lazy max-heap over them), and encoding.
#include "core/data/bpe.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_set>

#include "core/io/atomic_file.h"
#include "core/util/error.h"

namespace kolo::data {
namespace {

constexpr std::string_view kWordStart = "\xe2\x96\x81";  // U+2581

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

// Every non-overlapping occurrence of the pair (a, b), left to right, replaced by `merged`.
void merge_pair(std::vector<int32_t>& syms, int32_t a, int32_t b, int32_t merged) {
  std::vector<int32_t> next;
  next.reserve(syms.size());
  for (size_t i = 0; i < syms.size(); ++i) {
    if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
      next.push_back(merged);
      ++i;
    } else {
      next.push_back(syms[i]);
    }
  }
  syms = std::move(next);
}

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::strchr(" \t\n\r\f\v", text[i]) && text[i] != '\0') ++i;
    const size_t start = i;
    while (i < text.size() && !(std::strchr(" \t\n\r\f\v", text[i]) && text[i] != '\0')) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

// UTF-8 characters of s; an invalid lead byte counts as one character so any input is accepted.
std::vector<std::string_view> utf8_chars(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    len = std::min(len, s.size() - i);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace

void BpeTokenizer::add_piece(const std::string& piece) { pieces_.push_back(piece); }

void BpeTokenizer::add_merge(int32_t left, int32_t right) {
  merge_rank_.emplace(pair_key(left, right), static_cast<int32_t>(merges_.size()));
  merges_.emplace_back(left, right);
  add_piece(pieces_[left] + pieces_[right]);
}

const std::string& BpeTokenizer::piece(int32_t id) const {
  KOLO_CHECK(id >= 0 && id < vocab_size(), "BpeTokenizer: id ", id, " outside vocabulary of ", vocab_size());
  return pieces_[id];
}

BpeTokenizer BpeTokenizer::train(const std::vector<std::string>& texts, TrainOptions options) {
  // Word frequencies, in sorted order so the result does not depend on hash-map iteration.
  std::map<std::string, int64_t> word_freq;
  for (const auto& t : texts)
    for (std::string_view w : split_words(t)) ++word_freq[std::string(kWordStart) + std::string(w)];

  std::map<std::string, int64_t> char_freq;
  for (const auto& [w, f] : word_freq)
    for (std::string_view c : utf8_chars(w)) char_freq[std::string(c)] += f;
  std::vector<std::pair<std::string, int64_t>> chars(char_freq.begin(), char_freq.end());
  std::stable_sort(chars.begin(), chars.end(), [](const auto& a, const auto& b) { return a.second > b.second; });

  BpeTokenizer tok;
  for (const char* s : {"<pad>", "<s>", "</s>", "<unk>"}) tok.add_piece(s);
  for (const auto& [c, f] : chars) {
    tok.char_ids_.emplace(c, static_cast<int32_t>(tok.pieces_.size()));
    tok.add_piece(c);
  }
  tok.num_chars_ = static_cast<int64_t>(chars.size());
  KOLO_CHECK(options.vocab_size >= kNumSpecial + tok.num_chars_, "BpeTokenizer::train: vocab_size ",
             options.vocab_size, " is smaller than the ", kNumSpecial + tok.num_chars_,
             " special tokens and characters of the training text");

  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freqs;
  for (const auto& [w, f] : word_freq) {
    std::vector<int32_t> syms;
    for (std::string_view c : utf8_chars(w)) syms.push_back(tok.char_ids_.at(std::string(c)));
    words.push_back(std::move(syms));
    freqs.push_back(f);
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;  // may list stale words; checked on use
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const uint64_t k = pair_key(words[w][i], words[w][i + 1]);
      pair_count[k] += freqs[w];
      auto& list = pair_words[k];
      if (list.empty() || list.back() != static_cast<int32_t>(w)) list.push_back(static_cast<int32_t>(w));
    }
  // Max-heap on (count, then smaller key); entries whose count is out of date are skipped when popped.
  using Entry = std::pair<int64_t, uint64_t>;
  auto lower = [](const Entry& a, const Entry& b) { return a.first != b.first ? a.first < b.first : a.second > b.second; };
  std::priority_queue<Entry, std::vector<Entry>, decltype(lower)> heap(lower);
  for (const auto& [k, c] : pair_count) heap.emplace(c, k);

  while (tok.vocab_size() < options.vocab_size && !heap.empty()) {
    const auto [count, key] = heap.top();
    heap.pop();
    auto it = pair_count.find(key);
    if (it == pair_count.end() || it->second != count) continue;
    if (count < options.min_frequency) break;
    const auto a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xffffffffu);
    const auto merged = static_cast<int32_t>(tok.vocab_size());
    tok.add_merge(a, b);

    std::unordered_set<uint64_t> touched;
    std::vector<int32_t> affected = std::move(pair_words[key]);
    pair_words.erase(key);
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    for (int32_t w : affected) {
      std::vector<int32_t>& syms = words[w];
      bool has = false;
      for (size_t i = 0; i + 1 < syms.size() && !has; ++i) has = syms[i] == a && syms[i + 1] == b;
      if (!has) continue;
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        const uint64_t k = pair_key(syms[i], syms[i + 1]);
        pair_count[k] -= freqs[w];
        touched.insert(k);
      }
      merge_pair(syms, a, b, merged);
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        const uint64_t k = pair_key(syms[i], syms[i + 1]);
        pair_count[k] += freqs[w];
        touched.insert(k);
        auto& list = pair_words[k];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
    for (uint64_t k : touched) {
      const int64_t c = pair_count[k];
      if (c <= 0) {
        pair_count.erase(k);
      } else {
        heap.emplace(c, k);
      }
    }
  }
  return tok;
}

std::vector<int32_t> BpeTokenizer::encode_word(std::string_view word) const {
  std::vector<int32_t> syms;
  for (std::string_view c : utf8_chars(word)) {
    auto it = char_ids_.find(std::string(c));
    syms.push_back(it == char_ids_.end() ? kUnk : it->second);
  }
  // Apply the earliest-learnt merge present, all its occurrences left to right, until none applies.
  for (;;) {
    int32_t best = -1;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      auto it = merge_rank_.find(pair_key(syms[i], syms[i + 1]));
      if (it != merge_rank_.end() && (best < 0 || it->second < best)) best = it->second;
    }
    if (best < 0) return syms;
    const auto [a, b] = merges_[best];
    const auto merged = static_cast<int32_t>(kNumSpecial + num_chars_ + best);
    merge_pair(syms, a, b, merged);
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (std::string_view w : split_words(text)) {
    const auto syms = encode_word(std::string(kWordStart) + std::string(w));
    ids.insert(ids.end(), syms.begin(), syms.end());
  }
  return ids;
}

std::vector<std::string> BpeTokenizer::encode_pieces(std::string_view text) const {
  std::vector<std::string> out;
  for (int32_t id : encode(text)) out.push_back(piece(id));
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string joined;
  for (int32_t id : ids) {
    if (id == kPad || id == kBos || id == kEos) continue;
    joined += id == kUnk ? std::string("\xe2\x81\x87") : piece(id);
  }
  std::string out;
  size_t pos = 0;
  while (pos < joined.size()) {
    if (joined.compare(pos, kWordStart.size(), kWordStart) == 0) {
      if (!out.empty()) out += ' ';
      pos += kWordStart.size();
    } else {
      out += joined[pos++];
    }
  }
  return out;
}

void BpeTokenizer::save(const std::string& path) const {
  std::ostringstream out;
  out << "kolo-bpe 1\n" << num_chars_ << "\n";
  for (int64_t c = 0; c < num_chars_; ++c) out << pieces_[kNumSpecial + c] << "\n";
  out << merges_.size() << "\n";
  for (const auto& [a, b] : merges_) out << a << " " << b << "\n";
  // Whole or not at all: a cached vocabulary cut inside a merge line ("123 4" for "123 45") would still load.
  write_file_atomically(path, out.str());
}

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  std::ifstream in(path);
  KOLO_CHECK(in.good(), "BpeTokenizer::load: cannot open ", path, ": ", std::strerror(errno));
  std::string line;
  int64_t line_no = 0;
  auto next_line = [&](const char* what) {
    KOLO_CHECK(static_cast<bool>(std::getline(in, line)), path, ":", line_no + 1, ": unexpected end of file, expected ",
               what);
    ++line_no;
    return line;
  };
  auto parse_count = [&](const std::string& s, const char* what) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    KOLO_CHECK(!s.empty() && *end == '\0' && v >= 0, path, ":", line_no, ": expected ", what, ", got '", s, "'");
    return static_cast<int64_t>(v);
  };
  KOLO_CHECK(next_line("header") == "kolo-bpe 1", path, ":1: not a kolo BPE model (header '", line, "')");
  BpeTokenizer tok;
  for (const char* s : {"<pad>", "<s>", "</s>", "<unk>"}) tok.add_piece(s);
  tok.num_chars_ = parse_count(next_line("character count"), "a character count");
  for (int64_t c = 0; c < tok.num_chars_; ++c) {
    const std::string ch = next_line("a character");
    KOLO_CHECK(!ch.empty() && utf8_chars(ch).size() == 1, path, ":", line_no, ": expected one character, got '", ch, "'");
    KOLO_CHECK(tok.char_ids_.emplace(ch, static_cast<int32_t>(tok.pieces_.size())).second, path, ":", line_no,
               ": duplicate character '", ch, "'");
    tok.add_piece(ch);
  }
  const int64_t merges = parse_count(next_line("merge count"), "a merge count");
  for (int64_t m = 0; m < merges; ++m) {
    const std::string l = next_line("a merge");
    const size_t sp = l.find(' ');
    KOLO_CHECK(sp != std::string::npos, path, ":", line_no, ": expected 'left_id right_id', got '", l, "'");
    const int64_t a = parse_count(l.substr(0, sp), "a left id"), b = parse_count(l.substr(sp + 1), "a right id");
    KOLO_CHECK(a >= kNumSpecial && b >= kNumSpecial && a < tok.vocab_size() && b < tok.vocab_size(), path, ":", line_no,
               ": merge ids ", a, " ", b, " must name earlier pieces (", kNumSpecial, "..", tok.vocab_size() - 1, ")");
    tok.add_merge(static_cast<int32_t>(a), static_cast<int32_t>(b));
  }
  return tok;
}

}  // namespace kolo::data
