#include "stallscope/agent_options.hpp"

#include <arpa/inet.h>

#include <optional>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "env.hpp"

namespace stallscope {

ListenAddress parse_listen_address(const std::string& text) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument(
        fmt::format("stallscope: listen address \"{}\" is invalid: {} (want HOST:PORT, e.g. "
                    "127.0.0.1:9464 or [::1]:9464)",
                    text, why));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) throw bad("no ':PORT'");
  std::string host = text.substr(0, colon);
  const std::string_view port_text = std::string_view(text).substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    throw bad("the port is not a number from 0 to 65535");
  }
  if (host == "localhost") host = "127.0.0.1";
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) != 1) {
      throw bad("not an IPv6 address inside [ ]");
    }
  } else if (inet_pton(AF_INET, host.c_str(), buf) != 1) {
    throw bad("the host is not an IPv4 address, \"localhost\" or [IPv6]");
  }
  return ListenAddress{host, static_cast<std::uint16_t>(port)};
}

AgentOptions AgentOptions::from_env() {
  AgentOptions o;
  detail::read_env(
      "STALLSCOPE_LISTEN", o.listen,
      [](std::string_view s) -> std::optional<std::string> {
        try {
          parse_listen_address(std::string(s));
        } catch (const std::invalid_argument&) {
          return std::nullopt;
        }
        return std::string(s);
      },
      "HOST:PORT with HOST an IPv4 address, \"localhost\" or [IPv6] and PORT from 0 to 65535",
      o.listen);
  detail::read_env("STALLSCOPE_AGENT", o.enabled, detail::parse_flag, detail::kFlagValues,
                   o.enabled ? "on" : "off");
  std::chrono::nanoseconds::rep ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(o.watchdog_threshold).count();
  if (detail::read_env(
          "STALLSCOPE_WATCHDOG_MS", ms,
          [](std::string_view s) {
            return detail::parse_whole<std::chrono::nanoseconds::rep>(s, 0, 3'600'000);
          },
          "a whole number of milliseconds from 0 to 3600000", fmt::format("{} ms", ms))) {
    o.watchdog_threshold = std::chrono::milliseconds(ms);
  }
  detail::read_env(
      "STALLSCOPE_WEB_CONFIG", o.web_config_file,
      [](std::string_view s) { return std::optional<std::string>(s); }, "a file name", "none");
  return o;
}

}  // namespace stallscope
