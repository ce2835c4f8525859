package audit

// Lingering reports whether r's writer is waiting for more events to
// join a batch.
func Lingering(r *Recorder) bool { return r.lingering.Load() }
