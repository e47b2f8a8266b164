// Corpus BLEU as sacreBLEU 2.x: 13a tokenizer, clipped n-gram counts over several references, closest
// reference length (shorter on ties), 'exp' smoothing and the brevity penalty.
#include "models/bleu.h"

#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "core/util/error.h"

namespace kolo {
namespace {

// Byte length of the whitespace character starting at s[i] (0 if none), using the characters Python's
// str.split() treats as whitespace, so our tokens equal sacreBLEU's on any UTF-8 input.
size_t whitespace_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  if (c == 0xc2 && (at(1) == 0x85 || at(1) == 0xa0)) return 2;
  if (c == 0xe1 && at(1) == 0x9a && at(2) == 0x80) return 3;  // U+1680
  if (c == 0xe2 && at(1) == 0x80) {
    const unsigned d = at(2);
    if ((d >= 0x80 && d <= 0x8a) || d == 0xa8 || d == 0xa9 || d == 0xaf) return 3;  // U+2000-200A, 2028/9, 202F
  }
  if (c == 0xe2 && at(1) == 0x81 && at(2) == 0x9f) return 3;  // U+205F
  if (c == 0xe3 && at(1) == 0x80 && at(2) == 0x80) return 3;  // U+3000
  return 0;
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0, start = std::string_view::npos;
  while (i < s.size()) {
    const size_t w = whitespace_len(s, i);
    if (w > 0) {
      if (start != std::string_view::npos) out.push_back(s.substr(start, i - start));
      start = std::string_view::npos;
      i += w;
    } else {
      if (start == std::string_view::npos) start = i;
      ++i;
    }
  }
  if (start != std::string_view::npos) out.push_back(s.substr(start));
  return out;
}

std::string join(const std::vector<std::string_view>& toks) {
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i) out += ' ';
    out += toks[i];
  }
  return out;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_period_comma(char c) { return c == '.' || c == ','; }

// The first 13a pattern's class: [{-~ [-` space-& (-+ :-@ /], i.e. ASCII punctuation except ' - . ,
bool is_split_punct(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// re.sub of a two-character pattern: scan left to right, non-overlapping matches.
template <typename Match, typename Emit>
std::string sub_pairs(const std::string& s, Match match, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::string rstrip(std::string_view s) {
  // Python's rstrip: drop trailing whitespace characters (multi-byte ones included).
  const auto toks_end = [&]() {
    size_t end = 0, i = 0;
    while (i < s.size()) {
      const size_t w = whitespace_len(s, i);
      if (w > 0) {
        i += w;
      } else {
        ++i;
        end = i;
      }
    }
    return end;
  }();
  return std::string(s.substr(0, toks_end));
}

std::string preprocess(std::string_view line, BleuTokenize tokenize, bool lowercase) {
  std::string s = rstrip(line);
  if (lowercase) {
    // sacreBLEU lowercases with Python's Unicode str.lower(); ASCII folding alone would score "Über" against
    // "über" as a miss, so non-ASCII text is refused rather than scored differently.
    for (char& c : s) {
      KOLO_CHECK(static_cast<unsigned char>(c) < 0x80, "BLEU with lowercase: non-ASCII text ('", line,
                 "'); only ASCII case folding is implemented, and sacreBLEU's Unicode lowercasing would differ");
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return tokenize == BleuTokenize::k13a ? tokenize_13a(s) : s;
}

// N-gram counts of orders 1..4 keyed by their space-joined tokens (tokens contain no spaces).
std::unordered_map<std::string, int64_t> ngram_counts(const std::vector<std::string_view>& toks) {
  std::unordered_map<std::string, int64_t> counts;
  for (int n = 1; n <= kBleuMaxOrder; ++n) {
    for (size_t i = 0; i + n <= toks.size(); ++i) {
      std::string key(toks[i]);
      for (int k = 1; k < n; ++k) {
        key += ' ';
        key += toks[i + k];
      }
      ++counts[key];
    }
  }
  return counts;
}

int ngram_order(const std::string& key) {
  int n = 1;
  for (char c : key) n += c == ' ';
  return n;
}

}  // namespace

std::string tokenize_13a(std::string_view line) {
  std::string s(line);
  replace_all(s, "<skipped>", "");
  replace_all(s, "-\n", "");
  replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    replace_all(s, "&quot;", "\"");
    replace_all(s, "&amp;", "&");
    replace_all(s, "&lt;", "<");
    replace_all(s, "&gt;", ">");
  }
  s = " " + s + " ";
  std::string a;
  a.reserve(s.size() * 2);
  for (char c : s) {
    if (is_split_punct(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  // tokenize period and comma unless preceded by a digit
  a = sub_pairs(a, [](char x, char y) { return !is_digit(x) && is_period_comma(y); },
                [](std::string& o, char x, char y) { o += x; o += ' '; o += y; o += ' '; });
  // tokenize period and comma unless followed by a digit
  a = sub_pairs(a, [](char x, char y) { return is_period_comma(x) && !is_digit(y); },
                [](std::string& o, char x, char y) { o += ' '; o += x; o += ' '; o += y; });
  // tokenize dash when preceded by a digit
  a = sub_pairs(a, [](char x, char y) { return is_digit(x) && y == '-'; },
                [](std::string& o, char x, char y) { o += x; o += ' '; o += y; o += ' '; });
  return join(split_whitespace(a));
}

BleuStats& BleuStats::operator+=(const BleuStats& o) {
  sys_len += o.sys_len;
  ref_len += o.ref_len;
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    correct[n] += o.correct[n];
    total[n] += o.total[n];
  }
  return *this;
}

std::vector<int64_t> BleuStats::to_counts() const {
  std::vector<int64_t> v{sys_len, ref_len};
  v.insert(v.end(), correct.begin(), correct.end());
  v.insert(v.end(), total.begin(), total.end());
  return v;
}

BleuStats BleuStats::from_counts(const std::vector<int64_t>& counts) {
  KOLO_CHECK(counts.size() == 2 + 2 * kBleuMaxOrder, "BleuStats::from_counts: expected ",
             2 + 2 * kBleuMaxOrder, " counts, got ", counts.size());
  BleuStats s;
  s.sys_len = counts[0];
  s.ref_len = counts[1];
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    s.correct[n] = counts[2 + n];
    s.total[n] = counts[2 + kBleuMaxOrder + n];
  }
  return s;
}

BleuStats segment_stats(std::string_view hypothesis, const std::vector<std::string_view>& references,
                        BleuTokenize tokenize, bool lowercase) {
  KOLO_CHECK(!references.empty(), "segment_stats: no reference for hypothesis '", hypothesis, "'");
  std::unordered_map<std::string, int64_t> ref_max;
  std::vector<int64_t> ref_lens;
  for (std::string_view ref : references) {
    const std::string r = preprocess(ref, tokenize, lowercase);
    const auto toks = split_whitespace(r);
    ref_lens.push_back(static_cast<int64_t>(toks.size()));
    for (const auto& [key, count] : ngram_counts(toks)) {
      int64_t& m = ref_max[key];
      m = std::max(m, count);
    }
  }
  const std::string h = preprocess(hypothesis, tokenize, lowercase);
  const auto toks = split_whitespace(h);
  BleuStats st;
  st.sys_len = static_cast<int64_t>(toks.size());
  // closest reference length, the shorter one on ties
  int64_t best_diff = -1, best_len = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(st.sys_len - len);
    if (best_diff < 0 || diff < best_diff || (diff == best_diff && len < best_len)) {
      best_diff = diff;
      best_len = len;
    }
  }
  st.ref_len = best_len;
  for (const auto& [key, count] : ngram_counts(toks)) {
    const int n = ngram_order(key) - 1;
    st.total[n] += count;
    auto it = ref_max.find(key);
    if (it != ref_max.end()) st.correct[n] += std::min(count, it->second);
  }
  return st;
}

BleuScore bleu_from_stats(const BleuStats& stats) {
  BleuScore out;
  out.stats = stats;
  out.bp = 1.0;
  if (stats.sys_len < stats.ref_len)
    out.bp = stats.sys_len > 0 ? std::exp(1.0 - static_cast<double>(stats.ref_len) / stats.sys_len) : 0.0;
  bool any_correct = false;
  for (int64_t c : stats.correct) any_correct = any_correct || c != 0;
  if (!any_correct) return out;  // score 0, as sacreBLEU's early exit
  double smooth = 1.0;
  for (int n = 0; n < kBleuMaxOrder; ++n) {
    if (stats.total[n] == 0) break;
    if (stats.correct[n] == 0) {
      smooth *= 2.0;
      out.precisions[n] = 100.0 / (smooth * static_cast<double>(stats.total[n]));
    } else {
      out.precisions[n] = 100.0 * static_cast<double>(stats.correct[n]) / static_cast<double>(stats.total[n]);
    }
  }
  double log_sum = 0.0;
  for (double p : out.precisions) log_sum += p == 0.0 ? -9999999999.0 : std::log(p);  // sacreBLEU's my_log
  out.score = out.bp * std::exp(log_sum / kBleuMaxOrder);
  return out;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, BleuTokenize tokenize,
                      bool lowercase) {
  KOLO_CHECK(!references.empty(), "corpus_bleu: no reference set given");
  for (size_t r = 0; r < references.size(); ++r)
    KOLO_CHECK(references[r].size() == hypotheses.size(), "corpus_bleu: reference set ", r, " has ",
               references[r].size(), " lines but there are ", hypotheses.size(), " hypotheses");
  BleuStats total;
  std::vector<std::string_view> refs(references.size());
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    for (size_t r = 0; r < references.size(); ++r) refs[r] = references[r][i];
    total += segment_stats(hypotheses[i], refs, tokenize, lowercase);
  }
  return bleu_from_stats(total);
}

}  // namespace kolo
