// Finds and dlopens libpeftd_sentencepiece.so (see sentencepiece_raw.h for why it is not linked).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "worker/data/sentencepiece_raw.h"

namespace peftd::data {
namespace {

constexpr char kShimName[] = "libpeftd_sentencepiece.so";

std::string ExecutableDir() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return "";
  std::string path(buf.data(), static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// The shim's factory, or nullptr and `*error`. Loaded once per process and never unloaded.
SentencePieceCreateFn Factory(std::string* error) {
  static std::once_flag once;
  static SentencePieceCreateFn factory = nullptr;
  static std::string load_error;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("PEFTD_SENTENCEPIECE_SHIM"); env != nullptr && *env) {
      candidates.push_back(env);
    }
#ifdef PEFTD_SENTENCEPIECE_SHIM_PATH
    candidates.push_back(PEFTD_SENTENCEPIECE_SHIM_PATH);
#endif
    if (const std::string dir = ExecutableDir(); !dir.empty()) {
      candidates.push_back(dir + "/" + kShimName);
    }
    candidates.push_back(kShimName);  // the dynamic loader's search path
    for (const std::string& c : candidates) {
      if (c.find('/') != std::string::npos && ::access(c.c_str(), R_OK) != 0) continue;
      void* handle = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        const char* e = ::dlerror();
        load_error += (load_error.empty() ? "" : "; ") + std::string(e ? e : c);
        continue;
      }
      factory =
          reinterpret_cast<SentencePieceCreateFn>(::dlsym(handle, "PeftdSentencePieceCreate"));
      if (factory != nullptr) return;
      load_error += "; " + c + " has no PeftdSentencePieceCreate";
    }
    if (load_error.empty()) load_error = std::string(kShimName) + " not found";
  });
  if (factory == nullptr) {
    *error = "cannot load " + std::string(kShimName) + " (" + load_error +
             "); set PEFTD_SENTENCEPIECE_SHIM to its path";
  }
  return factory;
}

}  // namespace

std::unique_ptr<SentencePieceRaw> SentencePieceRaw::Load(const std::string& path,
                                                         std::string* error) {
  SentencePieceCreateFn create = Factory(error);
  if (create == nullptr) return nullptr;
  return std::unique_ptr<SentencePieceRaw>(create(path.c_str(), error));
}

}  // namespace peftd::data
