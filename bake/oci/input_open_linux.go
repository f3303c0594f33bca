package oci

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// openInput opens a layer input for reading. On Linux it is a bare file
// descriptor: os.Open would also try (and fail) to add every regular
// file to the network poller, four fcntl calls and an epoll_ctl for each
// of the thousands of files a layer may read. O_NONBLOCK keeps a file
// replaced by a named pipe since it was listed from blocking the bake:
// it changes nothing for regular files.
func openInput(path string) (io.ReadCloser, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return &inputFD{fd: fd, path: path}, nil
	}
}

// inputFD is an input file read through its descriptor.
type inputFD struct {
	fd   int
	path string
}

func (f *inputFD) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *inputFD) Close() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}
