// Parallel text (source/target sentence pairs) from TSV files, two line-aligned files, or the Ding
// German–English dictionary shipped by Debian's trans-de-en package.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kolo::data {

struct SentencePair {
  std::string src;
  std::string tgt;
};

// One pair per line, "source<TAB>target"; blank lines skipped. A line without exactly one tab, or with
// an empty side, throws with path:line.
std::vector<SentencePair> read_tsv_pairs(const std::string& path);

// Line i of src_path pairs with line i of tgt_path; differing line counts throw naming both files.
std::vector<SentencePair> read_aligned_files(const std::string& src_path, const std::string& tgt_path);

inline constexpr const char* kDingDeEnPath = "/usr/share/trans/de-en";

// Ding's "German :: English" lines, each side split on " | " into aligned parts. Keeps the part pairs
// where both sides, with {…} [...] <…> annotations removed, are sentences: end in . ? or !, have at least
// `min_words` words. German is the source. Malformed lines (no " :: ", unequal part counts) throw with
// path:line unless they are comments.
std::vector<SentencePair> read_ding_sentences(const std::string& path = kDingDeEnPath, int min_words = 3);

// Splits off `held_out` pairs chosen by `seed` (deterministic): returns {train, held_out}.
std::pair<std::vector<SentencePair>, std::vector<SentencePair>> split_pairs(const std::vector<SentencePair>& pairs,
                                                                            int64_t held_out, uint64_t seed);

}  // namespace kolo::data
