// Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename it over the
// target, fsync the directory. A reader sees either the old file or the new one, never a partial write.
#pragma once

#include <string>

namespace kolo {

void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace kolo
