package busy

import (
	"reflect"
	"testing"
)

func TestSummarizeOneLinePerProcess(t *testing.T) {
	hs := []Holder{
		{PID: 12, Command: "sleep", Use: "cwd", Path: "/usr/local"},
		{PID: 12, Command: "sleep", Use: "exe", Path: "/usr/bin/sleep"},
		{PID: 12, Command: "sleep", Use: "fd 3", Path: "/usr/bin/a"},
	}
	for _, p := range []string{"/usr/lib/locale/C.utf8/LC_CTYPE", "/usr/lib/locale/C.utf8/LC_TIME", "/usr/lib/x86_64-linux-gnu/libc.so.6"} {
		hs = append(hs, Holder{PID: 12, Command: "sleep", Use: "mmap", Path: p})
	}
	hs = append(hs, Holder{PID: 40, Command: "bash", Use: "fd 0", Path: "/etc/passwd"}, Holder{PID: 40, Command: "bash", Use: "fd 7", Path: "/etc/group"})
	got := Lines(hs)
	want := []string{
		"PID 12 (sleep): cwd /usr/local, exe /usr/bin/sleep, fd 3 /usr/bin/a, 3 mappings under /usr/lib",
		"PID 40 (bash): 2 open files under /etc",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	ps := Summarize(hs)
	if u := ps[1].Uses[0]; u.What != "open file" || u.Count != 2 || !reflect.DeepEqual(u.FDs, []int{0, 7}) {
		t.Errorf("open files of PID 40: %+v", u)
	}
	if Lines(nil) != nil {
		t.Error("no holders, lines")
	}
	if d := commonDir([]string{"/a/b", "/c"}); d != "/" {
		t.Errorf("commonDir = %q", d)
	}
}
