// jemalloc reads this symbol at start-up. Never giving dirty pages back to the kernel keeps a
// training step from re-faulting the pages of the previous step (on a ~100M model, glibc's
// malloc or jemalloc's default decay cost a sixth to a third of the step in page faults).
extern "C" {
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
