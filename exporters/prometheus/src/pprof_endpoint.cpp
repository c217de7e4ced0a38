#include "pprof_endpoint.hpp"

#include <charconv>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "pprof_detail.hpp"
#include "query_string.hpp"
#include "stallscope/pprof.hpp"

namespace stallscope::detail {

namespace {

constexpr std::string_view kMutex = "/debug/pprof/mutex";
constexpr std::string_view kBlock = "/debug/pprof/block";
static_assert(kMaxProfileSeconds <= HttpServerOptions{}.max_defer);

struct ProfileRequest {
  ProfileType type = ProfileType::kMutex;
  std::chrono::seconds seconds{0};  // 0: the cumulative profile
  bool text = false;                // debug=1
};

// A whole number from `min` to `max`, or nothing.
std::optional<long long> whole(std::string_view v, long long min, long long max) {
  long long n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < min || n > max) return std::nullopt;
  return n;
}

// Throws std::invalid_argument naming the bad value.
ProfileRequest parse_request(std::string_view path, std::string_view query) {
  ProfileRequest r;
  r.type = path == kMutex ? ProfileType::kMutex : ProfileType::kBlock;
  for (const auto& [key, value] : query_fields(query)) {
    if (key == "seconds") {
      const auto n = whole(value, 1, kMaxProfileSeconds.count());
      if (!n) {
        throw std::invalid_argument(fmt::format(
            "stallscope: {}: seconds = {}: not a whole number of seconds from 1 to {} (the "
            "endpoint's write timeout)",
            path, quoted_value(value), kMaxProfileSeconds.count()));
      }
      r.seconds = std::chrono::seconds(*n);
    } else if (key == "debug") {
      const auto n = whole(value, 0, 1);
      if (!n) {
        throw std::invalid_argument(
            fmt::format("stallscope: {}: debug = {}: 0 (pprof protobuf) or 1 (text)", path,
                        quoted_value(value)));
      }
      r.text = *n == 1;
    }
  }
  return r;
}

HttpReply profile_reply(const ProfileRequest& req, const std::vector<ProfileSample>& samples,
                        std::chrono::nanoseconds duration) {
  HttpReply r;
  if (req.text) {
    r.body = pprof_text(samples, req.type);
    return r;
  }
  r.body = encode_pprof(samples, duration);
  // As Go's net/http/pprof serves them: gzip-compressed protobuf, saved as a file.
  r.content_type = "application/octet-stream";
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"profile\"");
  return r;
}

HttpReply failed(std::string_view path, const std::exception& e) {
  HttpReply r;
  r.status = 500;
  r.body = fmt::format("stallscope: {} failed: {}\n", path, e.what());
  return r;
}

}  // namespace

std::vector<std::string> pprof_paths() { return {std::string(kMutex), std::string(kBlock)}; }

bool is_pprof_path(std::string_view path) noexcept { return path == kMutex || path == kBlock; }

HttpReply render_pprof(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  const std::string_view query = target.substr(path.size());
  ProfileRequest req;
  try {
    req = parse_request(path, query);
  } catch (const std::invalid_argument& e) {
    HttpReply r;
    r.status = 400;
    r.body = fmt::format("{}\n", e.what());
    return r;
  }
  try {
    if (req.seconds.count() == 0) return profile_reply(req, profile_samples(req.type), {});
    // The delta: a baseline now, the difference when the server calls back.
    HttpReply r;
    r.defer = req.seconds;
    r.then = [path = std::string(path), req,
              base = std::make_shared<const ProfileBaseline>(profile_baseline(req.type))] {
      try {
        return profile_reply(req, samples_since(*base),
                             std::chrono::steady_clock::now() - base->taken);
      } catch (const std::exception& e) {
        return failed(path, e);
      }
    };
    return r;
  } catch (const std::exception& e) {
    return failed(path, e);
  }
}

}  // namespace stallscope::detail
