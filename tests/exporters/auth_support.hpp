#pragma once
// Basic-auth material for the exporter tests: bcrypt hashes made with libxcrypt (as htpasswd -B
// makes them) and Authorization header values base64-encoded by libcrypto.
#include <crypt.h>

#include <cstddef>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <openssl/evp.h>

namespace stallscope::test {

// A bcrypt hash of `password` at cost 4, the lowest: the tests check logic, not the cost.
inline std::string bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2y$", 4, nullptr, 0, salt, sizeof salt) != nullptr);
  crypt_data data{};
  const char* h = crypt_rn(password.c_str(), salt, &data, sizeof data);
  REQUIRE(h != nullptr);
  REQUIRE(h[0] == '$');
  return h;
}

// "Basic base64(user:password)", the value of an Authorization header.
inline std::string basic_auth(std::string_view user, std::string_view password) {
  const std::string in = std::string(user) + ":" + std::string(password);
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return "Basic " + out;
}

}  // namespace stallscope::test
