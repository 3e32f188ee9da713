// NATS decentralized authentication for a test, made as an operator's tool (nsc) would make
// it, which Debian does not ship: ed25519 keys (openssl) written as NKeys, an operator that
// signs an account with JetStream, the account that signs a user, and that user's credentials
// file (its JWT and NKey seed) for a client to present.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>

#include "durable_events.hpp"

namespace test {

class NatsCredentials {
 public:
  /// Makes the keys and the JWTs in a scratch directory of its own, removed with it.
  NatsCredentials() {
    const Key op = key("operator", kOperator), system = key("system", kAccount), account = key("account", kAccount),
              user = key("user", kUser);
    system_ = system.public_key;
    account_ = account.public_key;
    operator_jwt_ = sign(op, op.public_key, R"("nats":{"type":"operator","version":2})");
    system_jwt_ = sign(op, system.public_key, R"("nats":{"type":"account","version":2})");
    account_jwt_ = sign(op, account.public_key,
                        R"("nats":{"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,)"
                        R"("wildcards":true,"conn":-1,"leaf":-1,"mem_storage":-1,"disk_storage":-1,)"
                        R"("streams":-1,"consumer":-1},"type":"account","version":2})");
    const std::string user_jwt = sign(account, user.public_key,
                                      R"("nats":{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,)"
                                      R"("type":"user","version":2})");
    std::ofstream(dir_.file("operator.jwt")) << operator_jwt_;
    std::ofstream(dir_.file("user.creds")) << "-----BEGIN NATS USER JWT-----\n"
                                           << user_jwt << "\n------END NATS USER JWT------\n\n"
                                           << "-----BEGIN USER NKEY SEED-----\n"
                                           << user.seed << "\n------END USER NKEY SEED------\n";
  }

  /// The server's configuration: trust the operator, know its accounts (JetStream needs a
  /// system account).
  std::string server_config() const {
    return "operator: \"" + dir_.file("operator.jwt") + "\"\nsystem_account: " + system_ +
           "\nresolver: MEMORY\nresolver_preload: { " + system_ + ": \"" + system_jwt_ + "\", " + account_ + ": \"" +
           account_jwt_ + "\" }";
  }

  /// A file in its directory: "user.creds" is the user's credentials file.
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  // NKey prefixes (the first base32 letter of a public key: O, A, U; S for a seed).
  static constexpr std::uint8_t kOperator = 14 << 3, kAccount = 0, kUser = 20 << 3, kSeed = 18 << 3;

  struct Key {
    std::string pem;         ///< the private key, for openssl to sign with
    std::string public_key;  ///< its NKey: "O...", "A...", "U..."
    std::string seed;        ///< its NKey seed: "SO...", "SA...", "SU..."
  };

  static void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + command);
  }
  static std::string read(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }

  // The bytes in `alphabet`'s letters of `bits` bits each, without padding: base32 (NKeys),
  // base64url (JWTs).
  static std::string encode(const std::string& bytes, std::string_view alphabet, int bits) {
    std::string out;
    unsigned buffer = 0;
    int held = 0;
    for (unsigned char c : bytes) {
      buffer = (buffer << 8) | c;
      for (held += 8; held >= bits; held -= bits) out += alphabet[(buffer >> (held - bits)) & ((1u << bits) - 1)];
    }
    if (held > 0) out += alphabet[(buffer << (bits - held)) & ((1u << bits) - 1)];
    return out;
  }
  static std::string base32(const std::string& bytes) { return encode(bytes, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 5); }
  static std::string base64url(const std::string& bytes) {
    return encode(bytes, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 6);
  }
  // CRC-16/XMODEM, little-endian after the key, as NKeys check themselves.
  static std::string with_crc16(std::string bytes) {
    std::uint16_t crc = 0;
    for (unsigned char c : bytes) {
      crc ^= static_cast<std::uint16_t>(c << 8);
      for (int i = 0; i < 8; ++i) crc = static_cast<std::uint16_t>(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    bytes += static_cast<char>(crc & 0xff);
    bytes += static_cast<char>(crc >> 8);
    return bytes;
  }

  Key key(const std::string& name, std::uint8_t prefix) const {
    Key k;
    k.pem = dir_.file(name + ".pem");
    run("openssl genpkey -algorithm ed25519 -out " + k.pem);
    run("openssl pkey -in " + k.pem + " -outform DER -out " + k.pem + ".der");
    run("openssl pkey -in " + k.pem + " -pubout -outform DER -out " + k.pem + ".pub.der");
    const std::string private_der = read(k.pem + ".der"), public_der = read(k.pem + ".pub.der");
    const std::string seed = private_der.substr(private_der.size() - 32),
                      raw = public_der.substr(public_der.size() - 32);
    k.public_key = base32(with_crc16(std::string(1, static_cast<char>(prefix)) + raw));
    const char seed_prefix[] = {static_cast<char>(kSeed | (prefix >> 5)), static_cast<char>((prefix & 31) << 3)};
    k.seed = base32(with_crc16(std::string(seed_prefix, 2) + seed));
    return k;
  }

  // A JWT that `issuer` signs about `subject`, with `nats` the claims' "nats" member.
  std::string sign(const Key& issuer, const std::string& subject, const std::string& nats) const {
    const auto now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const std::string claims = R"({"jti":")" + subject.substr(0, 20) + R"(","iat":)" + std::to_string(now) +
                               R"(,"iss":")" + issuer.public_key + R"(","name":"crier-test","sub":")" + subject +
                               "\"," + nats + "}";
    const std::string signed_part = base64url(R"({"typ":"JWT","alg":"ed25519-nkey"})") + "." + base64url(claims);
    const auto input = dir_.file("to-sign"), signature = dir_.file("signature");
    std::ofstream(input, std::ios::binary) << signed_part;
    run("openssl pkeyutl -sign -rawin -inkey " + issuer.pem + " -in " + input + " -out " + signature);
    return signed_part + "." + base64url(read(signature));
  }

  ScratchDir dir_;
  std::string system_, account_, operator_jwt_, system_jwt_, account_jwt_;
};

}  // namespace test
