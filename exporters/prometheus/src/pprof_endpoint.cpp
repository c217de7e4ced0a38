#include "pprof_endpoint.hpp"

#include <exception>

#include <fmt/format.h>

#include "stallscope/pprof.hpp"

namespace stallscope::detail {

namespace {
constexpr std::string_view kMutex = "/debug/pprof/mutex";
constexpr std::string_view kBlock = "/debug/pprof/block";
}  // namespace

std::vector<std::string> pprof_paths() { return {std::string(kMutex), std::string(kBlock)}; }

bool is_pprof_path(std::string_view path) noexcept { return path == kMutex || path == kBlock; }

HttpReply render_pprof(std::string_view path) {
  HttpReply r;
  try {
    r.body = pprof_profile(path == kMutex ? ProfileType::kMutex : ProfileType::kBlock);
  } catch (const std::exception& e) {
    r.status = 500;
    r.body = fmt::format("stallscope: {} failed: {}\n", path, e.what());
    return r;
  }
  // As Go's net/http/pprof serves them: gzip-compressed protobuf, saved as a file.
  r.content_type = "application/octet-stream";
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"profile\"");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

}  // namespace stallscope::detail
