// Hostfile and -H list parsing: accepted forms, precise errors, and a fuzz loop over arbitrary bytes.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "core/util/error.h"
#include "launch/hostfile.h"

namespace kolo::launch {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_hostfile(text, "hosts.txt");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Hostfile, AcceptsOpenMpiAndColonForms) {
  const auto hosts = parse_hostfile(
      "# two sockets each\n"
      "node1 slots=2\n"
      "\n"
      "node2   slots=4  max_slots=8   # comment after\n"
      "node3:3\r\n"
      "node4\n",
      "hosts.txt");
  ASSERT_EQ(hosts.size(), 4u);
  EXPECT_EQ(hosts[0], (HostSlots{"node1", 2}));
  EXPECT_EQ(hosts[1], (HostSlots{"node2", 4}));
  EXPECT_EQ(hosts[2], (HostSlots{"node3", 3}));
  EXPECT_EQ(hosts[3], (HostSlots{"node4", std::nullopt}));
}

TEST(Hostfile, RepeatedHostSumsSlotsLikeMpirun) {
  const auto hosts = parse_hostfile("a slots=2\nb slots=1\na slots=3\n", "h");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0], (HostSlots{"a", 5}));
  EXPECT_EQ(hosts[1], (HostSlots{"b", 1}));
}

TEST(Hostfile, MissingSlotsResolveToCoresPerNode) {
  const auto hosts = resolve_slots(parse_hostfile("a\nb slots=2\n", "h"), 16);
  EXPECT_EQ(format_host_list(hosts), "a:16,b:2");
}

TEST(Hostfile, ErrorsNameFileLineAndProblem) {
  EXPECT_NE(error_of("a slots=2\n\nb slots=0\n").find("hosts.txt:3"), std::string::npos);
  EXPECT_NE(error_of("b slots=0").find("at least 1"), std::string::npos);
  EXPECT_NE(error_of("b slots=two").find("'two' is not a positive integer"), std::string::npos);
  EXPECT_NE(error_of("b slots=-1").find("not a positive integer"), std::string::npos);
  EXPECT_NE(error_of("b slots=99999999999999").find("exceeds"), std::string::npos);
  EXPECT_NE(error_of("b slots=70000").find("exceeds 65536"), std::string::npos);
  EXPECT_NE(error_of("b colour=red").find("unknown hostfile key 'colour'"), std::string::npos);
  EXPECT_NE(error_of("b slots").find("expected key=value"), std::string::npos);
  EXPECT_NE(error_of("b slots=2 slots=3").find("given twice"), std::string::npos);
  EXPECT_NE(error_of("b:2 slots=3").find("given twice"), std::string::npos);
  EXPECT_NE(error_of("b slots=4 max_slots=2").find("below slots"), std::string::npos);
  EXPECT_NE(error_of("no$de slots=1").find("may only contain"), std::string::npos);
  EXPECT_NE(error_of("-node slots=1").find("must start with"), std::string::npos);
  EXPECT_NE(error_of("a slots=1\na\n").find("both with and without"), std::string::npos);
  EXPECT_NE(error_of("# only a comment\n\n").find("lists no hosts"), std::string::npos);
  EXPECT_NE(error_of("").find("lists no hosts"), std::string::npos);
  EXPECT_NE(error_of("a:").find("slot count is empty"), std::string::npos);
}

TEST(HostList, ParsesCountsAndDefaultsToOneSlot) {
  const auto hosts = parse_host_list("node1:4,node2,node1:2");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0], (HostSlots{"node1", 6}));
  EXPECT_EQ(hosts[1], (HostSlots{"node2", 1}));
  EXPECT_EQ(format_host_list(hosts), "node1:6,node2:1");
}

TEST(HostList, RejectsMalformedEntries) {
  EXPECT_THROW(parse_host_list(""), Error);
  EXPECT_THROW(parse_host_list("a,,b"), Error);
  EXPECT_THROW(parse_host_list("a,"), Error);
  EXPECT_THROW(parse_host_list(":3"), Error);
  EXPECT_THROW(parse_host_list("a:0"), Error);
  EXPECT_THROW(parse_host_list("a:3:4"), Error);
  EXPECT_THROW(parse_host_list("a b:2"), Error);
}

// Any byte string either parses into well-formed hosts or raises kolo::Error; nothing else may escape.
void check_parse_is_total(const std::string& text) {
  try {
    for (const auto& host : parse_hostfile(text, "fuzz")) {
      ASSERT_FALSE(host.name.empty());
      ASSERT_LE(host.name.size(), 253u);
      if (host.slots) {
        ASSERT_GE(*host.slots, 1);
        ASSERT_LE(*host.slots, kMaxSlotsPerHost);
      }
    }
  } catch (const Error&) {
  }
  try {
    for (const auto& host : parse_host_list(text)) ASSERT_GE(*host.slots, 1);
  } catch (const Error&) {
  }
}

TEST(HostfileFuzz, RandomBytesAndMutationsNeverEscapeAsAnythingButError) {
  std::mt19937 rng(20261123);
  using namespace std::string_literals;
  const std::string alphabet = "ab1:=# \n\r\tslotsmax_,.-\0\xff"s;
  const std::string seed_text = "node1 slots=2 max_slots=4\nnode2:3\n# c\nnode3\n";
  for (int iter = 0; iter < 20000; ++iter) {
    std::string text;
    if (iter % 2 == 0) {
      const int len = static_cast<int>(rng() % 64);
      for (int i = 0; i < len; ++i) {
        text += iter % 4 == 0 ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
      }
    } else {
      text = seed_text;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !text.empty(); ++e) {
        const size_t pos = rng() % text.size();
        switch (rng() % 3) {
          case 0: text[pos] = alphabet[rng() % alphabet.size()]; break;
          case 1: text.erase(pos, 1); break;
          default: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        }
      }
    }
    check_parse_is_total(text);
    if (HasFatalFailure()) FAIL() << "input: " << ::testing::PrintToString(text);
  }
}

}  // namespace
}  // namespace kolo::launch
