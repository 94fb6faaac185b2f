package overlay

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/mount"
)

func TestOptionsOrderAndPinned(t *testing.T) {
	m := Mount{Target: "/usr", Lowers: []string{"/c/l/2/tree/usr", "/usr"}, Upper: "/c/l/3/tree/usr", Work: "/c/l/3/work/usr"}
	var got []string
	for _, o := range Options(m) {
		got = append(got, o.Key+"="+o.Value)
	}
	want := "lowerdir+=/c/l/2/tree/usr lowerdir+=/usr upperdir=/c/l/3/tree/usr workdir=/c/l/3/work/usr " +
		"index=off metacopy=off redirect_dir=nofollow xino=auto nfs_export=off"
	if strings.Join(got, " ") != want {
		t.Errorf("Options =\n %s\nwant\n %s", strings.Join(got, " "), want)
	}
	d, err := Data(m)
	if err != nil {
		t.Fatal(err)
	}
	if d != "lowerdir=/c/l/2/tree/usr:/usr,upperdir=/c/l/3/tree/usr,workdir=/c/l/3/work/usr,index=off,metacopy=off,redirect_dir=nofollow,xino=auto,nfs_export=off" {
		t.Errorf("Data = %s", d)
	}
}

func TestDataEscapes(t *testing.T) {
	m := Mount{Target: "/x", Lowers: []string{"/a:b", `/c,d\e`}, Upper: "/u,p", Work: "/w"}
	d, err := Data(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d, `lowerdir=/a\:b:/c\,d\\e,upperdir=/u\,p,workdir=/w,`) {
		t.Errorf("Data = %s", d)
	}
}

func TestDataTooLong(t *testing.T) {
	m := Mount{Target: "/usr", Upper: "/u", Work: "/w"}
	for i := 0; i < 200; i++ {
		m.Lowers = append(m.Lowers, "/overlay/ovpkg/layers/0123/tree/usr")
	}
	if _, err := Data(m); !errors.Is(err, ErrOptionsTooLong) {
		t.Errorf("200 layers: %v", err)
	}
	if len(Options(m)) != 200+2+len(Pinned) {
		t.Error("Options dropped layers")
	}
}

func TestValidate(t *testing.T) {
	if err := (Mount{Target: "/usr", Upper: "/u", Work: "/w"}).Validate(); err == nil {
		t.Error("no lowers accepted")
	}
	if err := (Mount{Target: "usr", Lowers: []string{"/usr"}, Upper: "/u", Work: "/w"}).Validate(); err == nil {
		t.Error("relative target accepted")
	}
}

const fixture = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 7:3 / /overlay rw,noatime shared:2 - ext2 /dev/loop3 rw,errors=remount-ro
31 22 0:40 / /usr rw,relatime shared:3 - overlay ovpkg rw,lowerdir=/usr,upperdir=/overlay/ovpkg/layers/0001/tree/usr,workdir=/overlay/ovpkg/layers/0001/work/usr,redirect_dir=nofollow,xino=auto
`

func TestCheckFree(t *testing.T) {
	tab, err := mount.ReadTable(strings.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	usr := Mount{Target: "/srv/usr", Lowers: []string{"/srv/usr"}, Upper: "/overlay/ovpkg/layers/0001/tree/usr/", Work: "/w1"}
	etc := Mount{Target: "/etc", Lowers: []string{"/etc"}, Upper: "/overlay/ovpkg/layers/0001/tree/etc", Work: "/w2"}
	err = CheckFree(tab, []Mount{etc, usr})
	if err == nil || !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "/usr") {
		t.Errorf("upper in use: %v", err)
	}
	if err := CheckFree(tab, []Mount{etc}); err != nil {
		t.Errorf("free upper refused: %v", err)
	}
	dup := etc
	dup.Target = "/etc2"
	dup.Work = "/w3"
	if err := CheckFree(tab, []Mount{etc, dup}); err == nil {
		t.Error("two overlays sharing an upper accepted")
	}
}

func TestStackErrorMessage(t *testing.T) {
	e := &StackError{Index: 2, Total: 5, Target: "/var", Err: unix.EINVAL}
	if s := e.Error(); !strings.Contains(s, "overlay 3 of 5 (/var)") || !strings.Contains(s, "2 overlay(s) already mounted were unmounted") {
		t.Error(s)
	}
	if !errors.Is(e, unix.EINVAL) {
		t.Error("StackError lost errno")
	}
}

func TestFromMount(t *testing.T) {
	const info = `160 137 0:72 / /r/usr rw,nodev,relatime - overlay ovpkg rw,lowerdir+=/c/l/0003/tree/usr,lowerdir+=/r/usr,upperdir=/c/l/0004/tree/usr,workdir=/c/l/0004/work/usr,redirect_dir=nofollow,xino=auto
161 137 0:73 / /r/etc rw - overlay ovpkg rw,lowerdir=/c/l/0001/tree/etc:/r/etc,upperdir=/c/l/0002/tree/etc,workdir=/c/l/0002/work/etc
162 137 0:74 / /r/var rw - overlay other rw,lowerdir=/a,upperdir=/b,workdir=/c
163 137 0:75 / /r/opt rw - tmpfs ovpkg rw
`
	tab, err := mount.ReadTable(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := FromMount(tab.Lookup("/r/usr"))
	want := Mount{Target: "/r/usr", Lowers: []string{"/c/l/0003/tree/usr", "/r/usr"}, Upper: "/c/l/0004/tree/usr", Work: "/c/l/0004/work/usr"}
	if !ok || !reflect.DeepEqual(m, want) {
		t.Errorf("new API: %+v %v", m, ok)
	}
	m, ok = FromMount(tab.Lookup("/r/etc"))
	want = Mount{Target: "/r/etc", Lowers: []string{"/c/l/0001/tree/etc", "/r/etc"}, Upper: "/c/l/0002/tree/etc", Work: "/c/l/0002/work/etc"}
	if !ok || !reflect.DeepEqual(m, want) {
		t.Errorf("legacy: %+v %v", m, ok)
	}
	for _, p := range []string{"/r/var", "/r/opt", "/nowhere"} {
		if _, ok := FromMount(tab.Lookup(p)); ok {
			t.Errorf("%s read as an ovpkg overlay", p)
		}
	}
}
