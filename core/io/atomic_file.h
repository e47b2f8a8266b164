// Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename it over the
// target, fsync the directory. A reader sees either the old file or the new one, never a partial write.
#pragma once

#include <string>

namespace kolo {

void write_file_atomically(const std::string& path, const std::string& bytes);

// Removes from `dir` the temporary files write_file_atomically left for targets whose names start with
// `name_prefix`, when the process that wrote them is gone (killed mid-write: a preempted job). They are hidden
// and full-size.
void remove_abandoned_temporaries(const std::string& dir, const std::string& name_prefix);

}  // namespace kolo
