#include "stallscope/agent_options.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

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
  if (const char* v = std::getenv("STALLSCOPE_LISTEN"); v != nullptr && *v != '\0') {
    try {
      parse_listen_address(v);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(fmt::format("STALLSCOPE_LISTEN: {}", e.what()));
    }
    o.listen = v;
  }
  if (const char* v = std::getenv("STALLSCOPE_AGENT"); v != nullptr && *v != '\0') {
    const std::string_view s(v);
    if (s == "0" || s == "false" || s == "off") {
      o.enabled = false;
    } else if (s == "1" || s == "true" || s == "on") {
      o.enabled = true;
    } else {
      throw std::invalid_argument(fmt::format(
          "stallscope: STALLSCOPE_AGENT=\"{}\" is not one of 0, 1, true, false, on, off", s));
    }
  }
  if (const char* v = std::getenv("STALLSCOPE_WATCHDOG_MS"); v != nullptr && *v != '\0') {
    const std::string_view s(v);
    unsigned ms = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), ms);
    if (ec != std::errc() || end != s.data() + s.size() || ms > 3'600'000) {
      throw std::invalid_argument(fmt::format(
          "stallscope: STALLSCOPE_WATCHDOG_MS=\"{}\" is not a whole number of milliseconds from 0 "
          "to 3600000",
          s));
    }
    o.watchdog_threshold = std::chrono::milliseconds(ms);
  }
  return o;
}

}  // namespace stallscope
