package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/gopacket/pcapgo"
)

// pcapng block types.
const (
	ngSHB = 0x0a0d0d0a // section header
	ngIDB = 0x00000001 // interface description
	ngPB  = 0x00000002 // packet (obsolete)
	ngSPB = 0x00000003 // simple packet
	ngISB = 0x00000005 // interface statistics
	ngEPB = 0x00000006 // enhanced packet
)

// ngScan is what the structural check of a pcapng file found.
type ngScan struct {
	end       int   // bytes of whole blocks; a truncated last block starts here
	linkTypes []int // the link type of each packet block, in file order
	firstLT   int   // link type of the first interface (-1: none)
}

// scanPcapng walks the blocks of a pcapng file and checks what pcapgo relies
// on without checking itself: block lengths (header, trailer, minimum for the
// type), section versions, option lengths and the sizes of the options it
// decodes, interface ids, and that packet data fits in its block. pcapgo
// also keeps link types in a uint8, so the scan records the real ones.
func scanPcapng(data []byte) (ngScan, error) {
	s := ngScan{firstLT: -1}
	var bo binary.ByteOrder = binary.LittleEndian
	var ifaces []ngIface
	off := 0
	for i := 0; off < len(data); i++ {
		rest := len(data) - off
		if rest < 12 {
			if i == 0 {
				return s, fmt.Errorf("truncated section header block: %d bytes", rest)
			}
			s.end = off
			return s, nil
		}
		typ := binary.LittleEndian.Uint32(data[off:])
		if typ == ngSHB {
			switch binary.LittleEndian.Uint32(data[off+8:]) {
			case 0x1a2b3c4d:
				bo = binary.LittleEndian
			case 0x4d3c2b1a:
				bo = binary.BigEndian
			default:
				return s, fmt.Errorf("block %d at offset %d: bad byte-order magic 0x%08x in section header", i, off, binary.BigEndian.Uint32(data[off+8:]))
			}
			ifaces = ifaces[:0]
		} else {
			typ = bo.Uint32(data[off:])
			if i == 0 {
				return s, errors.New("file does not start with a section header block")
			}
		}
		blen := int(bo.Uint32(data[off+4:]))
		if blen < 12 || blen%4 != 0 {
			return s, fmt.Errorf("block %d (type 0x%x) at offset %d: invalid total length %d", i, typ, off, blen)
		}
		if blen > rest {
			if i == 0 {
				return s, fmt.Errorf("truncated section header block: %d of %d bytes", rest, blen)
			}
			s.end = off
			return s, nil
		}
		if tl := int(bo.Uint32(data[off+blen-4:])); tl != blen {
			return s, fmt.Errorf("block %d (type 0x%x) at offset %d: total length %d in header but %d in trailer", i, typ, off, blen, tl)
		}
		b := data[off : off+blen-4] // without the trailer
		fail := func(format string, args ...any) error {
			return fmt.Errorf("block %d (type 0x%x) at offset %d: %s", i, typ, off, fmt.Sprintf(format, args...))
		}
		switch typ {
		case ngSHB:
			if blen < 28 {
				return s, fail("section header of %d bytes, want at least 28", blen)
			}
			if major, minor := bo.Uint16(b[12:]), bo.Uint16(b[14:]); major != 1 || minor != 0 {
				return s, fail("unsupported version %d.%d (want 1.0)", major, minor)
			}
			if err := checkOptions(bo, b[24:], nil); err != nil {
				return s, fail("%v", err)
			}
		case ngIDB:
			if blen < 20 {
				return s, fail("interface description of %d bytes, want at least 20", blen)
			}
			ifc := ngIface{linkType: int(bo.Uint16(b[8:])), snapLen: bo.Uint32(b[12:])}
			err := checkOptions(bo, b[16:], func(code int, v []byte) error {
				switch code {
				case 9: // if_tsresol
					if len(v) < 1 {
						return errors.New("empty if_tsresol option")
					}
					if e := v[0] & 0x7f; (v[0]&0x80 != 0 && e > 62) || (v[0]&0x80 == 0 && e > 18) {
						return fmt.Errorf("if_tsresol 0x%02x out of range", v[0])
					}
				case 14: // if_tsoffset
					if len(v) < 8 {
						return fmt.Errorf("if_tsoffset of %d bytes, want 8", len(v))
					}
				case 11: // if_filter
					if len(v) < 1 {
						return errors.New("empty if_filter option")
					}
				}
				return nil
			})
			if err != nil {
				return s, fail("%v", err)
			}
			if s.firstLT < 0 {
				s.firstLT = ifc.linkType
			}
			ifaces = append(ifaces, ifc)
		case ngISB:
			if blen < 24 {
				return s, fail("interface statistics of %d bytes, want at least 24", blen)
			}
			if id := int(bo.Uint32(b[8:])); id >= len(ifaces) {
				return s, fail("interface id %d, but the section has %d interfaces", id, len(ifaces))
			}
			err := checkOptions(bo, b[20:], func(code int, v []byte) error {
				if code >= 2 && code <= 5 && len(v) < 8 {
					return fmt.Errorf("statistics option %d of %d bytes, want 8", code, len(v))
				}
				return nil
			})
			if err != nil {
				return s, fail("%v", err)
			}
		case ngEPB, ngPB:
			if blen < 32 {
				return s, fail("packet block of %d bytes, want at least 32", blen)
			}
			var id int
			if typ == ngEPB {
				id = int(bo.Uint32(b[8:]))
			} else {
				id = int(bo.Uint16(b[8:]))
			}
			if id >= len(ifaces) {
				return s, fail("interface id %d, but the section has %d interfaces", id, len(ifaces))
			}
			if caplen := int(bo.Uint32(b[20:])); caplen > blen-32 {
				return s, fail("captured length %d does not fit in the block", caplen)
			}
			s.linkTypes = append(s.linkTypes, ifaces[id].linkType)
		case ngSPB:
			if blen < 16 {
				return s, fail("simple packet block of %d bytes, want at least 16", blen)
			}
			if len(ifaces) == 0 {
				return s, fail("simple packet block before any interface description")
			}
			caplen := int64(bo.Uint32(b[8:]))
			if sl := int64(ifaces[0].snapLen); sl != 0 && caplen > sl {
				caplen = sl
			}
			if caplen > int64(blen-16) {
				return s, fail("packet length %d does not fit in the block", caplen)
			}
			s.linkTypes = append(s.linkTypes, ifaces[0].linkType)
		}
		off += blen
	}
	s.end = off
	return s, nil
}

type ngIface struct {
	linkType int
	snapLen  uint32
}

// checkOptions checks that the options in b fit, each padded to 4 bytes,
// that opt_endofopt has length 0, and passes each option to check.
func checkOptions(bo binary.ByteOrder, b []byte, check func(code int, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%d stray bytes after the options", len(b))
		}
		code, n := int(bo.Uint16(b)), int(bo.Uint16(b[2:]))
		if code == 0 {
			if n != 0 {
				return fmt.Errorf("opt_endofopt with length %d", n)
			}
			return nil
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			return fmt.Errorf("option %d of length %d overruns the block", code, n)
		}
		if check != nil {
			if err := check(code, b[4:4+n]); err != nil {
				return err
			}
		}
		b = b[4+padded:]
	}
	return nil
}

// readPcapng reads a pcapng file: scanPcapng checks it, pcapgo decodes it.
func (c *Capture) readPcapng(data []byte) error {
	s, err := scanPcapng(data)
	if err != nil {
		return err
	}
	if s.end < len(data) {
		c.Notes = append(c.Notes, fmt.Sprintf("truncated last block at offset %d: %d bytes", s.end, len(data)-s.end))
		data = data[:s.end]
	}
	c.LinkType = s.firstLT
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return err
	}
	a := arena{hint: len(data)}
	for i := 0; ; i++ {
		buf, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("packet %d: %v", i, err)
		}
		if i >= len(s.linkTypes) {
			return fmt.Errorf("packet %d: more packets than packet blocks", i)
		}
		c.add(&a, s.linkTypes[i], ci.Timestamp.UnixNano(), buf, ci.Length)
	}
	return nil
}
