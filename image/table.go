package image

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Partition table kinds.
const (
	TableDOS = "dos"
	TableGPT = "gpt"
)

const (
	sectorSize = 512
	// PartitionAlign is where the partition starts and the unit its size
	// is rounded to: 1 MiB, as fdisk and sfdisk align.
	PartitionAlign = MiB
	mbrTypeLinux   = 0x83
	mbrTypeGPT     = 0xee
	gptEntries     = 128
	gptEntrySize   = 128
	// gptReserved is what GPT keeps at the end of the disk: the backup
	// entries (32 sectors) and header (1 sector).
	gptReserved = (gptEntries*gptEntrySize/sectorSize + 1) * sectorSize
)

// LinuxFilesystemGUID is the GPT type of a Linux data partition.
const LinuxFilesystemGUID = gpt.LinuxFilesystem

// linuxGUIDBytes is LinuxFilesystemGUID as stored on disk (mixed endian).
var linuxGUIDBytes = []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4}

// Layout is where the one partition of a new image goes.
type Layout struct {
	Table     string
	PartStart int64 // bytes
	PartSize  int64 // bytes
}

// PlanLayout places one partition at 1 MiB reaching to the end of a disk
// of size bytes (for GPT: to the last whole MiB before the backup table).
func PlanLayout(size int64, table string) (Layout, error) {
	l := Layout{Table: table, PartStart: PartitionAlign}
	switch table {
	case TableDOS:
		l.PartSize = size - PartitionAlign
		if (l.PartStart+l.PartSize)/sectorSize > 1<<32 {
			return l, fmt.Errorf("%s is too large for an MBR table (at most 2 TiB)", FormatSize(size))
		}
	case TableGPT:
		end := (size - gptReserved) / PartitionAlign * PartitionAlign
		l.PartSize = end - PartitionAlign
	default:
		return l, fmt.Errorf("partition table %q not supported (dos or gpt)", table)
	}
	if l.PartSize <= 0 {
		return l, fmt.Errorf("%s leaves no room for a partition", FormatSize(size))
	}
	return l, nil
}

// noSync hides Sync from go-diskfs's GPT writer, which flushes after every
// sector it writes; Create flushes the whole image once at the end.
type noSync struct{ backend.WritableFile }

// writeTable writes the partition table for l to f (a disk of size bytes).
func writeTable(f backend.WritableFile, size int64, l Layout, label string) error {
	switch l.Table {
	case TableDOS:
		// LBA-only CHS markers (0xfe 0xff 0xff) as for any disk past 8 GB.
		t := &mbr.Table{
			LogicalSectorSize:  sectorSize,
			PhysicalSectorSize: sectorSize,
			Partitions: []*mbr.Partition{{
				Index: 1, Type: mbr.Linux,
				Start: uint32(l.PartStart / sectorSize), Size: uint32(l.PartSize / sectorSize),
				StartHead: 0xfe, StartSector: 0xff, StartCylinder: 0xff,
				EndHead: 0xfe, EndSector: 0xff, EndCylinder: 0xff,
			}},
		}
		if err := t.Write(f, size); err != nil {
			return err
		}
		// go-diskfs leaves the disk signature zero; give the disk an
		// identifier so PARTUUID is meaningful.
		var id [4]byte
		if _, err := rand.Read(id[:]); err != nil {
			return err
		}
		_, err := f.WriteAt(id[:], 440)
		return err
	case TableGPT:
		t := &gpt.Table{
			LogicalSectorSize:  sectorSize,
			PhysicalSectorSize: sectorSize,
			ProtectiveMBR:      true,
			Partitions: []*gpt.Partition{{
				Index: 1, Type: gpt.LinuxFilesystem, Name: label,
				Start: uint64(l.PartStart / sectorSize),
				End:   uint64((l.PartStart+l.PartSize)/sectorSize - 1),
			}},
		}
		return t.Write(noSync{f}, size)
	}
	return fmt.Errorf("partition table %q not supported", l.Table)
}

// part is one partition found in a table.
type part struct {
	index       int // 1-based
	start, size int64
	linux       bool
	kind        string // type byte or GUID, for messages
}

// readTable finds the partitions of the disk in r (size bytes). Its
// errors lack Path; the caller fills it in.
func readTable(r io.ReaderAt, size int64) (table string, parts []part, perr *Error) {
	if size < sectorSize {
		return "", nil, &Error{Err: ErrNoTable, Msg: fmt.Sprintf("file is %d bytes, too short for a partition table", size)}
	}
	b := make([]byte, sectorSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		return "", nil, &Error{Err: ErrNoTable, Msg: "cannot read the partition table: " + err.Error()}
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return "", nil, &Error{Err: ErrNoTable, Msg: "no partition table (no MBR signature at byte 510); not a card image made by mkoverlay"}
	}
	gptSeen := false
	for i := 0; i < 4; i++ {
		e := b[446+16*i:]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:])) * sectorSize
		n := int64(binary.LittleEndian.Uint32(e[12:])) * sectorSize
		if typ == 0 || n == 0 {
			continue
		}
		if e[0] != 0 && e[0] != 0x80 {
			return TableDOS, nil, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("MBR entry %d has an invalid boot flag 0x%02x", i+1, e[0])}
		}
		if typ == mbrTypeGPT {
			gptSeen = true
			continue
		}
		parts = append(parts, part{index: i + 1, start: start, size: n, linux: typ == mbrTypeLinux, kind: fmt.Sprintf("type 0x%02x", typ)})
	}
	if gptSeen {
		return readGPT(r, size)
	}
	return TableDOS, parts, nil
}

func readGPT(r io.ReaderAt, size int64) (string, []part, *Error) {
	le := binary.LittleEndian
	h := make([]byte, sectorSize)
	if size < 2*sectorSize {
		return TableGPT, nil, &Error{Err: ErrTruncated, Msg: "file ends before the GPT header"}
	}
	if _, err := r.ReadAt(h, sectorSize); err != nil {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: "cannot read the GPT header: " + err.Error()}
	}
	if !bytes.Equal(h[0:8], []byte("EFI PART")) {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: "protective MBR but no GPT header at sector 1"}
	}
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > sectorSize {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("GPT header size %d is invalid", hsize)}
	}
	want := le.Uint32(h[16:])
	hc := append([]byte(nil), h[:hsize]...)
	le.PutUint32(hc[16:], 0)
	if crc32.ChecksumIEEE(hc) != want {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: "GPT header checksum mismatch (corrupt table)"}
	}
	firstUsable, lastUsable := int64(le.Uint64(h[40:])), int64(le.Uint64(h[48:]))
	entLBA := int64(le.Uint64(h[72:]))
	count, esize := le.Uint32(h[80:]), le.Uint32(h[84:])
	if esize < 128 || esize > 4096 || esize%8 != 0 || count == 0 || count > 4096 || entLBA < 2 {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("GPT entry array (%d entries of %d bytes at sector %d) is invalid", count, esize, entLBA)}
	}
	arr := make([]byte, int64(count)*int64(esize))
	if entLBA*sectorSize+int64(len(arr)) > size {
		return TableGPT, nil, &Error{Err: ErrTruncated, Msg: "file ends before the GPT entry array"}
	}
	if _, err := r.ReadAt(arr, entLBA*sectorSize); err != nil {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: "cannot read the GPT entries: " + err.Error()}
	}
	if crc32.ChecksumIEEE(arr) != le.Uint32(h[88:]) {
		return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: "GPT entry array checksum mismatch (corrupt table)"}
	}
	var parts []part
	for i := uint32(0); i < count; i++ {
		e := arr[i*esize:]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		if last < first || first < firstUsable || (lastUsable > 0 && last > lastUsable) {
			return TableGPT, nil, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("GPT partition %d (sectors %d-%d) lies outside the usable area %d-%d", i+1, first, last, firstUsable, lastUsable)}
		}
		parts = append(parts, part{index: int(i) + 1, start: first * sectorSize, size: (last - first + 1) * sectorSize,
			linux: bytes.Equal(e[0:16], linuxGUIDBytes), kind: "GPT type " + guidString(e[0:16])})
	}
	return TableGPT, parts, nil
}

func guidString(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

// checkParts verifies bounds and overlap and picks the first Linux
// partition.
func checkParts(table string, parts []part, size int64) (part, *Error) {
	for i, p := range parts {
		if p.start < sectorSize || (table == TableGPT && p.start < 34*sectorSize) {
			return p, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("partition %d starts at byte %d, inside the partition table", p.index, p.start)}
		}
		for _, q := range parts[i+1:] {
			if p.start < q.start+q.size && q.start < p.start+p.size {
				return p, &Error{Err: ErrBadPartition, Msg: fmt.Sprintf("partitions %d and %d overlap", p.index, q.index)}
			}
		}
	}
	for _, p := range parts {
		if !p.linux {
			continue
		}
		if p.start+p.size > size {
			return p, &Error{Err: ErrTruncated, Msg: fmt.Sprintf("partition %d ends at byte %d but the file has %d bytes (truncated copy, or a table pointing past the end)",
				p.index, p.start+p.size, size)}
		}
		return p, nil
	}
	kinds := ""
	for _, p := range parts {
		kinds += fmt.Sprintf(" %d:%s", p.index, p.kind)
	}
	if kinds == "" {
		kinds = " none"
	}
	return part{}, &Error{Err: ErrBadPartition, Msg: "no Linux partition in the " + table + " table (partitions:" + kinds + ")"}
}
