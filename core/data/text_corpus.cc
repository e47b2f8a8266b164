// Readers for sentence-pair corpora; every error names the file and line.
#include "core/data/text_corpus.h"

#include <cstring>
#include <fstream>
#include <set>

#include "core/data/shard_sampler.h"
#include "core/util/error.h"

namespace kolo::data {
namespace {

std::ifstream open_text(const std::string& path) {
  std::ifstream in(path);
  KOLO_CHECK(in.good(), "cannot open ", path, ": ", std::strerror(errno));
  return in;
}

void chomp(std::string& s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n')) s.pop_back();
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t start = 0, pos;
  while ((pos = s.find(sep, start)) != std::string::npos) {
    out.push_back(s.substr(start, pos - start));
    start = pos + sep.size();
  }
  out.push_back(s.substr(start));
  return out;
}

// Drops {gender}, [domain], <synonym> annotations (unbalanced openers drop the rest) and squeezes spaces.
std::string strip_annotations(const std::string& s) {
  std::string out;
  char close = 0;
  for (char c : s) {
    if (close) {
      if (c == close) close = 0;
      continue;
    }
    if (c == '{') close = '}';
    else if (c == '[') close = ']';
    else if (c == '<') close = '>';
    else out += c;
  }
  std::string squeezed;
  for (char c : out) {
    if (c == ' ' && (squeezed.empty() || squeezed.back() == ' ')) continue;
    squeezed += c;
  }
  return trim(squeezed);
}

int count_words(const std::string& s) {
  int n = 0;
  bool in_word = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\t';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

bool is_sentence(const std::string& s, int min_words) {
  if (s.empty()) return false;
  const char last = s.back();
  return (last == '.' || last == '?' || last == '!') && count_words(s) >= min_words;
}

}  // namespace

std::vector<SentencePair> read_tsv_pairs(const std::string& path) {
  std::ifstream in = open_text(path);
  std::vector<SentencePair> pairs;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    chomp(line);
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    KOLO_CHECK(tab != std::string::npos && line.find('\t', tab + 1) == std::string::npos, path, ":", line_no,
               ": expected 'source<TAB>target', found ", tab == std::string::npos ? "no tab" : "several tabs");
    SentencePair p{trim(line.substr(0, tab)), trim(line.substr(tab + 1))};
    KOLO_CHECK(!p.src.empty() && !p.tgt.empty(), path, ":", line_no, ": empty ", p.src.empty() ? "source" : "target",
               " sentence");
    pairs.push_back(std::move(p));
  }
  KOLO_CHECK(!in.bad(), "read error in ", path, " after line ", line_no);
  return pairs;
}

std::vector<SentencePair> read_aligned_files(const std::string& src_path, const std::string& tgt_path) {
  std::ifstream src = open_text(src_path), tgt = open_text(tgt_path);
  std::vector<SentencePair> pairs;
  std::string a, b;
  int64_t line_no = 0;
  for (;;) {
    const bool has_a = static_cast<bool>(std::getline(src, a));
    const bool has_b = static_cast<bool>(std::getline(tgt, b));
    if (!has_a && !has_b) break;
    ++line_no;
    KOLO_CHECK(has_a && has_b, "aligned files differ in length: ", has_a ? tgt_path : src_path, " ends at line ",
               line_no - 1, " but ", has_a ? src_path : tgt_path, " has line ", line_no);
    chomp(a);
    chomp(b);
    pairs.push_back({a, b});
  }
  return pairs;
}

std::vector<SentencePair> read_ding_sentences(const std::string& path, int min_words) {
  std::ifstream in = open_text(path);
  std::vector<SentencePair> pairs;
  std::set<std::pair<std::string, std::string>> seen;  // the dictionary repeats example sentences
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    chomp(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t sep = line.find(" :: ");
    KOLO_CHECK(sep != std::string::npos, path, ":", line_no, ": expected 'German :: English'");
    const auto de = split_on(line.substr(0, sep), " | ");
    const auto en = split_on(line.substr(sep + 4), " | ");
    KOLO_CHECK(de.size() == en.size(), path, ":", line_no, ": ", de.size(), " German parts but ", en.size(),
               " English parts");
    for (size_t k = 0; k < de.size(); ++k) {
      std::string s = strip_annotations(de[k]), t = strip_annotations(en[k]);
      if (!is_sentence(s, min_words) || !is_sentence(t, min_words)) continue;
      if (!seen.insert({s, t}).second) continue;
      pairs.push_back({std::move(s), std::move(t)});
    }
  }
  KOLO_CHECK(!in.bad(), "read error in ", path, " after line ", line_no);
  return pairs;
}

std::pair<std::vector<SentencePair>, std::vector<SentencePair>> split_pairs(const std::vector<SentencePair>& pairs,
                                                                            int64_t held_out, uint64_t seed) {
  const auto [train_idx, test_idx] = split_indices(static_cast<int64_t>(pairs.size()), held_out, seed);
  std::vector<SentencePair> train, test;
  for (int64_t i : train_idx) train.push_back(pairs[i]);
  for (int64_t i : test_idx) test.push_back(pairs[i]);
  return {std::move(train), std::move(test)};
}

}  // namespace kolo::data
