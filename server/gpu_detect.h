// Which GPUs this machine has, without LibTorch or CUDA: the NVIDIA driver's /proc entries, else
// `nvidia-smi -L`. Used only when --gpus is not given.
#ifndef PEFTD_SERVER_GPU_DETECT_H_
#define PEFTD_SERVER_GPU_DETECT_H_

#include <string>
#include <vector>

namespace peftd::server {

// CUDA_VISIBLE_DEVICES values "0".."n-1": n = entries of `proc_dir` (one folder per GPU), else
// the "GPU <i>:" lines of `<nvidia_smi> -L` when that program exists on PATH (or at the given
// path), else none. Never fails: anything unreadable counts as no GPU.
std::vector<std::string> DetectGpus(const std::string& proc_dir = "/proc/driver/nvidia/gpus",
                                    const std::string& nvidia_smi = "nvidia-smi");

}  // namespace peftd::server

#endif  // PEFTD_SERVER_GPU_DETECT_H_
