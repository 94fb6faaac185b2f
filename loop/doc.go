// Package loop attaches files to Linux loop block devices and finds or
// detaches them again, with ioctls from golang.org/x/sys/unix only (no
// losetup, no udev, no partition scanning).
//
// It owns: choosing a free device (LOOP_CTL_GET_FREE with a bounded retry
// on the free-device race), binding a backing file with an offset, a size
// limit, read-only and autoclear flags (LOOP_CONFIGURE, or LOOP_SET_FD +
// LOOP_SET_STATUS64 where the kernel lacks it), checking that the kernel
// really applied those settings, creating a missing /dev/loopN node, and
// listing bound devices by backing file identity (st_dev/st_ino, not path).
//
// Options.DirectIO asks for O_DIRECT access to the backing file, so the
// card's blocks are not cached twice (best effort; see docs/loop.md).
//
// It does NOT mount anything, read or validate what is inside the backing
// file (see image/), or decide whether an image may be attached twice (the
// caller asks Lookup and decides).
//
// Lifetime of an autoclear device: the kernel detaches an autoclear device
// when its last opener goes away. Attach returns the Device with an open
// handle (Device.File); the caller mounts the device and then calls
// Device.Close. From then on the mount is what keeps the device bound, and
// unmounting it detaches the device asynchronously; WaitDetached confirms
// it. Closing before mounting detaches the device at once.
//
// Detach (LOOP_CLR_FD) on a device that is still open or mounted does not
// fail with EBUSY (verified on 6.18): the kernel turns it into a deferred
// detach (it sets autoclear) and returns success. Callers that must know the device
// is gone unmount first, then Detach, then WaitDetached.
package loop
