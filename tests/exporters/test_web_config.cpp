// The web configuration file (exporter-toolkit format): what it accepts, what it refuses and how
// each refusal is named, and the basic-auth check it drives.
#include <crypt.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <openssl/evp.h>

#include "auth_support.hpp"
#include "web_config.hpp"

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using stallscope::detail::load_web_config;
using stallscope::detail::WebConfig;

using stallscope::test::bcrypt;

std::string basic(const std::string& user, const std::string& password) {
  return stallscope::test::basic_auth(user, password);
}

// A fresh folder with a certificate and key placeholder (the loader checks that they can be
// read; the endpoint's TLS set-up checks what they hold).
class ConfigDir {
 public:
  ConfigDir() {
    dir_ = fs::temp_directory_path() / fmt::format("stallscope-webcfg-{}-{}", ::getpid(), ++n_);
    fs::create_directories(dir_);
    write("server.crt", "-----BEGIN CERTIFICATE-----\n");
    write("server.key", "-----BEGIN PRIVATE KEY-----\n");
  }
  ~ConfigDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ConfigDir(const ConfigDir&) = delete;
  ConfigDir& operator=(const ConfigDir&) = delete;

  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  static inline int n_ = 0;
  fs::path dir_;
};

std::string load_error(const std::string& path) {
  try {
    load_web_config(path);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<loaded without error>";
}

}  // namespace

TEST_CASE("a web config with TLS and users is read, paths relative to the file", "[webconfig]") {
  const ConfigDir dir;
  const std::string hash = bcrypt("s3cret");
  const std::string file = dir.write("web.yml", fmt::format(R"(
tls_server_config:
  cert_file: server.crt
  key_file: {}
basic_auth_users:
  prometheus: {}
  alice: '{}'
)",
                                                            dir.path("server.key"), hash, hash));
  const WebConfig c = load_web_config(file);
  REQUIRE(c.tls);
  CHECK(c.tls->cert_file == dir.path("server.crt"));
  CHECK(c.tls->key_file == dir.path("server.key"));
  REQUIRE(c.users.size() == 2);
  CHECK(c.users[0].name == "prometheus");
  CHECK(c.users[0].bcrypt_hash == hash);
  CHECK(c.users[1].name == "alice");
  CHECK(c.requires_auth());
}

TEST_CASE("an empty web config enforces nothing", "[webconfig]") {
  const ConfigDir dir;
  const WebConfig c = load_web_config(dir.write("web.yml", "# nothing here\n"));
  CHECK_FALSE(c.tls);
  CHECK_FALSE(c.requires_auth());
  CHECK(c.authorized(""));
}

TEST_CASE("a bad web config is refused naming the file and what is wrong", "[webconfig]") {
  const ConfigDir dir;
  SECTION("a file that does not exist") {
    CHECK_THAT(load_error(dir.path("missing.yml")),
               Contains(dir.path("missing.yml")) && Contains("cannot be read"));
  }
  SECTION("YAML that does not parse") {
    const std::string f = dir.write("web.yml", "tls_server_config: [unclosed\n");
    CHECK_THAT(load_error(f), Contains(f) && Contains("not valid YAML"));
  }
  SECTION("an unknown key") {
    const std::string f = dir.write("web.yml", "basic_auth_user:\n  a: b\n");
    CHECK_THAT(load_error(f), Contains("unknown key \"basic_auth_user\""));
  }
  SECTION("a TLS setting stallscope does not implement is not silently ignored") {
    const std::string f = dir.write("web.yml",
                                    "tls_server_config:\n  cert_file: server.crt\n  key_file: "
                                    "server.key\n  client_auth_type: RequireAndVerifyClientCert\n");
    CHECK_THAT(load_error(f),
               Contains("tls_server_config.client_auth_type is not supported by stallscope"));
  }
  SECTION("a certificate without a key") {
    const std::string f = dir.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n");
    CHECK_THAT(load_error(f), Contains("no key_file"));
  }
  SECTION("a key file that cannot be read") {
    const std::string f =
        dir.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n");
    CHECK_THAT(load_error(f), Contains("key_file") && Contains(dir.path("nope.key")));
  }
  SECTION("a password that is not a bcrypt hash") {
    const std::string f = dir.write("web.yml", "basic_auth_users:\n  bob: plaintext-password\n");
    const std::string what = load_error(f);
    CHECK_THAT(what, Contains("basic_auth_users.bob") && Contains("not a bcrypt hash"));
    CHECK_THAT(what, !Contains("plaintext-password"));  // never echo a secret in full
  }
  SECTION("a user list that is not a mapping") {
    const std::string f = dir.write("web.yml", "basic_auth_users:\n  - bob\n");
    CHECK_THAT(load_error(f), Contains("basic_auth_users must be a mapping"));
  }
}

TEST_CASE("basic auth admits the right password only", "[webconfig][auth]") {
  WebConfig c;
  c.users.push_back({"prometheus", bcrypt("correct horse")});
  c.users.push_back({"alice", bcrypt("wonderland")});

  CHECK(c.authorized(basic("prometheus", "correct horse")));
  CHECK(c.authorized(basic("alice", "wonderland")));
  // Twice: the second answer comes from the cache of checked headers, and must agree.
  CHECK(c.authorized(basic("prometheus", "correct horse")));

  CHECK_FALSE(c.authorized(basic("prometheus", "correct horse ")));
  CHECK_FALSE(c.authorized(basic("prometheus", "wonderland")));  // another user's password
  CHECK_FALSE(c.authorized(basic("mallory", "correct horse")));
  CHECK_FALSE(c.authorized(basic("", "")));
  CHECK_FALSE(c.authorized(""));
  CHECK_FALSE(c.authorized("Basic"));
  CHECK_FALSE(c.authorized("Basic !!!!"));
  CHECK_FALSE(c.authorized("Bearer abc.def"));
  CHECK_FALSE(c.authorized(basic("prometheus", "correct horse").substr(0, 14)));

  // The scheme is case-insensitive (RFC 7617), the credentials are not.
  std::string lower = basic("alice", "wonderland");
  lower.replace(0, 5, "bASIC");
  CHECK(c.authorized(lower));
  CHECK_FALSE(c.authorized(basic("Alice", "wonderland")));
}

TEST_CASE("a changed password hash does not admit the old password from the cache",
          "[webconfig][auth]") {
  WebConfig c;
  c.users.push_back({"ops", bcrypt("old")});
  REQUIRE(c.authorized(basic("ops", "old")));
  c.users[0].bcrypt_hash = bcrypt("new");
  CHECK_FALSE(c.authorized(basic("ops", "old")));
  CHECK(c.authorized(basic("ops", "new")));
}

TEST_CASE("a password with a colon is split at the first colon", "[webconfig][auth]") {
  WebConfig c;
  c.users.push_back({"u", bcrypt("pa:ss")});
  CHECK(c.authorized(basic("u", "pa:ss")));
}
