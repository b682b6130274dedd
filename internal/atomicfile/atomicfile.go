// Package atomicfile replaces a file so that a crash or a power loss
// leaves the old content or the new, never a mix or an empty file: the
// new content goes to a temporary file in the same folder, is fsynced,
// renamed over the old name, and the folder is fsynced so that the rename
// itself is durable. The token store, the audit log's head and the
// admin's Design use it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, its mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), perm)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = SyncDir(dir)
	}
	return err
}

// SyncDir makes a created, renamed or removed name in dir durable; it
// fsyncs a file by name as well.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
