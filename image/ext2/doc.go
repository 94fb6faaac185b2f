// Package ext2 formats an ext2 filesystem (or a journal-less ext4 with
// extents) into a region of a file, writing only metadata, and decodes the
// superblock of an existing ext2/3/4 filesystem.
//
// It owns the on-disk layout: block size and inode ratio per size,
// superblock and its sparse_super backups, group descriptors, block and
// inode bitmaps, the root directory and lost+found. Inode tables and data
// blocks are never written: on a freshly truncated (sparse) file they read
// as zeros, which is what an unused inode is. The caller must therefore
// hand Format a region that reads as zeros.
//
// It does NOT create files beyond the root and lost+found, grow or resize
// filesystems, write journals, checksums (metadata_csum), flex_bg or
// resize_inode, and it does not mount or check anything: e2fsck is the
// judge in the tests.
package ext2
