#pragma once
// Test helpers: README snippets that a test compiles, kept equal to the README's text. The test
// marks its copy with `// README:NAME:begin` and `// README:NAME:end` lines.
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace stallscope::testing {

inline std::string read_file(const char* path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines between two markers of `text`, without the indentation of the first.
inline std::vector<std::string> marked(const std::string& text, const std::string& name) {
  const std::string begin = "// README:" + name + ":begin\n";
  std::size_t from = text.find(begin);
  REQUIRE(from != std::string::npos);
  from += begin.size();
  std::istringstream in(text.substr(from, text.find("// README:" + name + ":end") - from));
  std::vector<std::string> lines;
  std::string indent;
  for (std::string line; std::getline(in, line);) {
    if (lines.empty()) indent = line.substr(0, line.find_first_not_of(' '));
    if (line.starts_with(indent)) line.erase(0, indent.size());
    if (line.find_first_not_of(' ') != std::string::npos) lines.push_back(line);
  }
  return lines;
}

// The lines of the n-th ```cpp block after `heading` in the README.
inline std::vector<std::string> readme_block(const std::string& readme, const std::string& heading,
                                             int n) {
  std::size_t at = readme.find(heading);
  REQUIRE(at != std::string::npos);
  for (int i = 0; i <= n; ++i) {
    at = readme.find("```cpp\n", at);
    REQUIRE(at != std::string::npos);
    at += 7;
  }
  std::istringstream in(readme.substr(at, readme.find("```", at) - at));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace stallscope::testing
