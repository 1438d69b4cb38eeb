package tap

import "errors"

// ErrClosed is returned by Read and Write on a port that was closed.
var ErrClosed = errors.New("port closed")
