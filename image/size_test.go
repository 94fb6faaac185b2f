package image

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	ok := []struct {
		in   string
		want int64
	}{
		{"128", 128 * MiB},
		{"4", 4 * MiB},
		{" 64 ", 64 * MiB},
		{"512M", 512 * MiB},
		{"512m", 512 * MiB},
		{"512MiB", 512 * MiB},
		{"512mib", 512 * MiB},
		{"2G", 2 * GiB},
		{"2g", 2 * GiB},
		{"2GiB", 2 * GiB},
		{"1T", TiB},
		{"2T", 2 * TiB},
		{"8192K", 8 * MiB},
		{"8192KiB", 8 * MiB},
		{"+16", 16 * MiB},
		{"2048G", 2 * TiB},
	}
	for _, c := range ok {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"0", "zero"},
		{"0G", "zero"},
		{"-1", "negative"},
		{"-128M", "negative"},
		{"abc", "not a number"},
		{"M", "not a number"},
		{"1.5G", "whole number"},
		{"12X", "unknown unit"},
		{"12MB", "unknown unit"},
		{"12 Mi", "unknown unit"},
		{"3", "below the smallest"},
		{"3M", "below the smallest"},
		{"3072K", "below the smallest"},
		{"1023K", "whole number of MiB"},
		{"4097K", "whole number of MiB"},
		{"2049G", "too large"},
		{"3T", "too large"},
		{"99999999999999999999", "too large"},
		{"18446744073709551615G", "too large"},
		{"9999999999T", "too large"},
	}
	for _, c := range bad {
		got, err := ParseSize(c.in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", c.in, got)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSize(%q) error %q, want one line containing %q", c.in, err, c.msg)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{128 * MiB: "128 MiB", 2 * GiB: "2 GiB", 1536 * MiB: "1536 MiB", 2 * TiB: "2 TiB", 512: "512 bytes"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPlanLayout(t *testing.T) {
	for _, c := range []struct {
		size       int64
		table      string
		start, len int64
	}{
		{4 * MiB, TableDOS, MiB, 3 * MiB},
		{128 * MiB, TableDOS, MiB, 127 * MiB},
		{2 * TiB, TableDOS, MiB, 2*TiB - MiB},
		{4 * MiB, TableGPT, MiB, 2 * MiB}, // the backup GPT takes the last (partial) MiB
		{128 * MiB, TableGPT, MiB, 126 * MiB},
	} {
		l, err := PlanLayout(c.size, c.table)
		if err != nil || l.PartStart != c.start || l.PartSize != c.len {
			t.Errorf("PlanLayout(%s, %s) = %+v, %v; want start %d size %d", FormatSize(c.size), c.table, l, err, c.start, c.len)
		}
	}
	if _, err := PlanLayout(4*TiB, TableDOS); err == nil {
		t.Error("PlanLayout(4 TiB, dos) succeeded; MBR cannot address it")
	}
	if _, err := PlanLayout(MiB, TableDOS); err == nil {
		t.Error("PlanLayout(1 MiB) left room for a partition?")
	}
	if _, err := PlanLayout(64*MiB, "sun"); err == nil {
		t.Error("PlanLayout accepted an unknown table")
	}
}

func TestUUID(t *testing.T) {
	u, err := newUUID()
	if err != nil {
		t.Fatal(err)
	}
	s := formatUUID(u)
	if len(s) != 36 || s != strings.ToLower(s) || s[14] != '4' {
		t.Errorf("formatUUID = %q, want lowercase canonical v4", s)
	}
	back, err := ParseUUID(strings.ToUpper(s))
	if err != nil || back != u {
		t.Errorf("ParseUUID(%q) = %v, %v", s, back, err)
	}
	for _, bad := range []string{"", "xyz", "0102030405060708090a0b0c0d0e0f1", "zz02030405060708090a0b0c0d0e0f10"} {
		if _, err := ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) succeeded", bad)
		}
	}
}
