package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// sharedPcaps returns the directory of the shared captures (../shared/pcaps
// from the module root), or skips the test when it is absent.
func sharedPcaps(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "pcaps")
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.tsv")); err != nil {
		t.Skipf("shared captures not found at %s (../shared/pcaps from the module root): %v", dir, err)
	}
	return dir
}

// manifestEntry is one line of MANIFEST.tsv.
type manifestEntry struct {
	category, file, linktype string
	packets                  int
}

func readManifest(t testing.TB, dir string) []manifestEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []manifestEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 5 || cols[0] == "category" {
			continue
		}
		n, err := strconv.Atoi(cols[4])
		if err != nil {
			t.Fatalf("MANIFEST.tsv: %q: bad packet count: %v", sc.Text(), err)
		}
		out = append(out, manifestEntry{category: cols[0], file: cols[1], linktype: cols[3], packets: n})
	}
	if len(out) == 0 {
		t.Fatal("MANIFEST.tsv lists no captures")
	}
	return out
}

// TestReadShared loads every capture of the manifest: readable ones give
// the manifest's packet count (loaded or counted as dropped), the files in
// badfile/ give errors that name the file.
func TestReadShared(t *testing.T) {
	dir := sharedPcaps(t)
	for _, m := range readManifest(t, dir) {
		t.Run(m.file, func(t *testing.T) {
			path := filepath.Join(dir, m.file)
			c, err := ReadFile(path)
			if m.category == "badfile" {
				if err == nil {
					t.Fatalf("got %d packets, want an error", len(c.Packets))
				}
				if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), path) {
					t.Fatalf("got error %q, want one wrapping ErrUnreadable that names %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Records(); got != uint64(m.packets) {
				t.Errorf("got %d records, want %d (MANIFEST.tsv)", got, m.packets)
			}
			for i, p := range c.Packets {
				if len(p.Data) < 14 && m.linktype != "ether" {
					t.Errorf("packet %d: synthesised frame of %d bytes", i, len(p.Data))
				}
			}
		})
	}
}

func TestReadBadFiles(t *testing.T) {
	dir := sharedPcaps(t)
	for _, tc := range []struct{ file, want string }{
		{"libpcap_pcap-invalid-version-1.pcap", "unsupported version 1.4"},
		{"libpcap_pcap-invalid-version-2.pcap", "unsupported version 2.5"},
		{"libpcap_linktype-reserved-field-not-zero.pcap", "reserved bits"},
		{"libpcap_pcapng-invalid-vers-1.pcapng", "unsupported version 0.1"},
		{"libpcap_shb-option-too-long.pcapng", "in trailer"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := ReadFile(filepath.Join(dir, "badfile", tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("got error %v, want one naming %s and saying %q", err, tc.file, tc.want)
			}
		})
	}
}

// pcapFile builds a classic pcap file of link type lt holding recs.
func pcapFile(t testing.TB, lt layers.LinkType, recs ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000, int64(i)*1000), CaptureLength: len(r), Length: len(r)}
		if err := w.WritePacket(ci, r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// ipv4Packet is a minimal IPv4/UDP packet from 10.0.0.2 to 198.51.100.7.
var ipv4Packet = []byte{
	0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 198, 51, 100, 7,
	0x30, 0x39, 0, 53, 0, 8, 0, 0,
}

func TestReadErrors(t *testing.T) {
	good := pcapFile(t, layers.LinkTypeEthernet, make([]byte, 60))
	badVersion := bytes.Clone(good)
	binary.LittleEndian.PutUint16(badVersion[4:], 3)
	bigRecord := bytes.Clone(good)
	binary.LittleEndian.PutUint32(bigRecord[24+8:], MaxRecord+1)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"unknown magic", []byte("hello world, this is not a capture"), "unknown magic"},
		{"short pcap header", good[:20], "truncated file header"},
		{"bad version", badVersion, "unsupported version 3.4"},
		{"huge record", bigRecord, "record 0 at offset 24"},
		{"pcapng short", []byte{0x0a, 0x0d, 0x0d, 0x0a, 1, 2}, "truncated section header"},
		{"gzip garbage", []byte{0x1f, 0x8b, 1, 2, 3}, "gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read("x.pcap", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.pcap: ") {
				t.Fatalf("got error %v, want one starting with the file name and saying %q", err, tc.want)
			}
		})
	}
}

func TestReadTruncatedLastRecord(t *testing.T) {
	full := pcapFile(t, layers.LinkTypeEthernet, make([]byte, 60), make([]byte, 60), make([]byte, 60))
	for _, cut := range []int{1, 10, 16, 17, 70} {
		c, err := Read("t.pcap", full[:len(full)-cut])
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if len(c.Packets) != 2 || len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "truncated") {
			t.Errorf("cut %d: got %d packets, notes %q; want 2 packets and a truncation note", cut, len(c.Packets), c.Notes)
		}
	}
	ng := pcapngFile(t, make([]byte, 60), make([]byte, 60))
	c, err := Read("t.pcapng", ng[:len(ng)-8])
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Packets) != 1 || len(c.Notes) != 1 {
		t.Errorf("pcapng: got %d packets, notes %q; want 1 packet and a truncation note", len(c.Packets), c.Notes)
	}
}

func pcapngFile(t testing.TB, recs ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000, int64(i)*1000), CaptureLength: len(r), Length: len(r)}
		if err := w.WritePacket(ci, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadLinkTypes(t *testing.T) {
	sll := append([]byte{0, 4, 0, 1, 0, 6, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0, 0x08, 0x00}, ipv4Packet...)
	sll2 := append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0}, ipv4Packet...)
	null := append([]byte{2, 0, 0, 0}, ipv4Packet...)
	loop := append([]byte{0, 0, 0, 2}, ipv4Packet...)
	derivedSrc := []byte{0x02, 0x00, 10, 0, 0, 2}
	derivedDst := []byte{0x02, 0x00, 198, 51, 100, 7}
	capturedSrc := []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	for _, tc := range []struct {
		name     string
		lt       layers.LinkType
		rec      []byte
		dst, src []byte
		verdict  string
	}{
		{"raw", layers.LinkTypeRaw, ipv4Packet, derivedDst, derivedSrc, ""},
		{"ipv4", layers.LinkTypeIPv4, ipv4Packet, derivedDst, derivedSrc, ""},
		{"dlt raw 12", 12, ipv4Packet, derivedDst, derivedSrc, ""},
		{"dlt raw 14", 14, ipv4Packet, derivedDst, derivedSrc, ""},
		{"null", layers.LinkTypeNull, null, derivedDst, derivedSrc, ""},
		{"loop", layers.LinkTypeLoop, loop, derivedDst, derivedSrc, ""},
		{"sll", layers.LinkTypeLinuxSLL, sll, derivedDst, capturedSrc, ""},
		{"sll short", layers.LinkTypeLinuxSLL, sll[:10], nil, nil, VerdictBadLinkHeader},
		{"raw not ip", layers.LinkTypeRaw, []byte{0x12, 0x34}, nil, nil, VerdictBadLinkHeader},
		{"ppp", layers.LinkTypePPP, ipv4Packet, nil, nil, VerdictUnsupportedLinkType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Read(tc.name, pcapFile(t, tc.lt, tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			if tc.verdict != "" {
				if len(c.Packets) != 0 || c.Dropped[tc.verdict] != 1 {
					t.Fatalf("got %d packets, dropped %v; want 1 %s", len(c.Packets), c.Dropped, tc.verdict)
				}
				return
			}
			if len(c.Packets) != 1 {
				t.Fatalf("got %d packets (dropped %v), want 1", len(c.Packets), c.Dropped)
			}
			f := c.Packets[0].Data
			if !bytes.Equal(f[0:6], tc.dst) || !bytes.Equal(f[6:12], tc.src) || f[12] != 0x08 || f[13] != 0 || !bytes.Equal(f[14:], ipv4Packet) {
				t.Fatalf("got frame % x, want dst % x src % x type 0800 and the IP packet", f, tc.dst, tc.src)
			}
		})
	}
	// SLL2 has link type 276, beyond pcapgo's uint8 LinkType: patch the
	// header.
	file := pcapFile(t, layers.LinkTypeEthernet, sll2)
	binary.LittleEndian.PutUint32(file[20:], LinkTypeSLL2)
	c, err := Read("sll2", file)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Packets) != 1 || !bytes.Equal(c.Packets[0].Data[6:12], capturedSrc) || !bytes.Equal(c.Packets[0].Data[14:], ipv4Packet) {
		t.Fatalf("sll2: got %d packets %x, want the IP packet from aa:bb:cc:dd:ee:ff", len(c.Packets), c.Packets)
	}
}

func TestReadGzipAndPcapng(t *testing.T) {
	frames := [][]byte{make([]byte, 60), make([]byte, 100)}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(pcapFile(t, layers.LinkTypeEthernet, frames...))
	zw.Close()
	for name, data := range map[string][]byte{"gzip": z.Bytes(), "pcapng": pcapngFile(t, frames...)} {
		c, err := Read(name, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Packets) != 2 || len(c.Packets[1].Data) != 100 || c.Packets[1].Time != 1000*1e9+1000 {
			t.Errorf("%s: got %d packets, want 2 with the second of 100 bytes at 1000.000001", name, len(c.Packets))
		}
	}
}

// FuzzRead feeds the loader arbitrary bytes: it must return a capture or an
// error, never panic, and count every record it returns.
func FuzzRead(f *testing.F) {
	f.Add(pcapFile(f, layers.LinkTypeEthernet, make([]byte, 60)))
	f.Add(pcapFile(f, layers.LinkTypeLinuxSLL, make([]byte, 30)))
	f.Add(pcapngFile(f, make([]byte, 60), make([]byte, 61)))
	for _, name := range []string{"gen_storm.pcap"} {
		if b, err := os.ReadFile(filepath.Join("..", "testdata", name)); err == nil {
			f.Add(b[:min(len(b), 2000)])
		}
	}
	if dir := filepath.Join("..", "..", "shared", "pcaps"); true {
		matches, _ := filepath.Glob(filepath.Join(dir, "*", "*.pcap*"))
		for _, m := range matches {
			if b, err := os.ReadFile(m); err == nil && len(b) < 4096 {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Read("fuzz", data)
		if err != nil {
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("error %v does not wrap ErrUnreadable", err)
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("reader panicked: %v", err)
			}
			return
		}
		for _, p := range c.Packets {
			if len(p.Data) > MaxRecord+14 {
				t.Fatalf("frame of %d bytes", len(p.Data))
			}
		}
	})
}

// TestReadPcapngErrors corrupts a valid pcapng file field by field.
func TestReadPcapngErrors(t *testing.T) {
	good := pcapngFile(t, make([]byte, 60))
	// Layout of pcapgo's output: SHB, IDB, EPB. Find the blocks.
	shbLen := int(binary.LittleEndian.Uint32(good[4:]))
	idb := shbLen
	idbLen := int(binary.LittleEndian.Uint32(good[idb+4:]))
	epb := idb + idbLen
	if binary.LittleEndian.Uint32(good[idb:]) != ngIDB || binary.LittleEndian.Uint32(good[epb:]) != ngEPB {
		t.Fatalf("unexpected layout of pcapgo's pcapng output: % x", good[:64])
	}
	if _, err := Read("good", good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(b []byte)
		want string
	}{
		{"bad byte-order magic", func(b []byte) { b[8] = 0 }, "byte-order magic"},
		{"block length not a multiple of 4", func(b []byte) { binary.LittleEndian.PutUint32(b[idb+4:], uint32(idbLen+1)) }, "invalid total length"},
		{"trailer mismatch", func(b []byte) { binary.LittleEndian.PutUint32(b[epb+4:], binary.LittleEndian.Uint32(b[epb+4:])-4) }, "in trailer"},
		{"interface id", func(b []byte) { binary.LittleEndian.PutUint32(b[epb+8:], 3) }, "interface id 3"},
		{"captured length", func(b []byte) { binary.LittleEndian.PutUint32(b[epb+20:], 1000) }, "does not fit"},
		{"first block not a section header", func(b []byte) { binary.LittleEndian.PutUint32(b[0:], ngIDB) }, "unknown magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tc.mod(b)
			_, err := Read("x.pcapng", b)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.pcapng: ") {
				t.Fatalf("got error %v, want one naming x.pcapng and saying %q", err, tc.want)
			}
		})
	}
}
