package tap

// Hooks for the external tests (package tap_test), which drive the
// drivers' input paths into a switch (package vswitch imports tap, so the
// switch cannot be used from package tap's own tests).

// DecodeVnetHdr is decodeVnetHdr: the virtio-net header decode of the TAP
// and AF_PACKET drivers' read path.
var DecodeVnetHdr = decodeVnetHdr

// WrapTUN is wrapTUN: the TUN driver's read path, which gives each IP
// packet an Ethernet header. The packet is at f.Buf[Headroom+TUNOffset:].
var WrapTUN = wrapTUN

// TUNOffset is where the TUN driver reads a packet, after Headroom.
const TUNOffset = tunOffset

// VnetHdrLen is the length of the virtio-net header the drivers use.
const VnetHdrLen = vnetHdrLen
