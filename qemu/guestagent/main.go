// Command guestagent runs inside roam's throw-away QEMU test guests (it is
// built statically and put in their initramfs): "guestagent udpecho PORT
// NAME" answers every UDP datagram with NAME, a space and the datagram, so
// that a client outside can tell which VM answered. The tests also run it
// on the host, in a namespace, as the client: "guestagent udpclient
// ADDR:PORT COUNT INTERVAL" sends COUNT datagrams "SEQ" from one socket,
// one every INTERVAL, and prints "S SEQ UNIXNANO" for each one sent and
// "R SEQ NAME SRC SEEN UNIXNANO" for each answer (SEEN: the client's
// address as the server saw it), until 2 s after the last datagram.
// "guestagent tcpsink PORT" accepts one TCP connection and prints the bytes
// it received; "guestagent tcpsend ADDR:PORT BYTES" sends BYTES bytes and
// prints them once the peer has closed its side.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) == 5 && os.Args[1] == "udpclient" {
		client(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "tcpsink" {
		sink(os.Args[2])
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "tcpsend" {
		send(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) != 4 || os.Args[1] != "udpecho" {
		fmt.Fprintln(os.Stderr, "usage: guestagent udpecho PORT NAME | udpclient ADDR:PORT COUNT INTERVAL")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "port:", err)
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	prefix := []byte(os.Args[3] + " ")
	buf := make([]byte, 2048)
	out := make([]byte, 0, 4096)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out = append(append(out[:0], prefix...), buf[:n]...)
		out = append(append(out, ' '), from.String()...)
		c.WriteToUDP(out, from)
	}
}

func client(addr, count, interval string) {
	n, err1 := strconv.Atoi(count)
	every, err2 := time.ParseDuration(interval)
	to, err3 := net.ResolveUDPAddr("udp4", addr)
	if err1 != nil || err2 != nil || err3 != nil {
		fmt.Fprintln(os.Stderr, "udpclient: bad arguments")
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			m, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			f := strings.Fields(string(buf[:m]))
			if len(f) != 3 {
				continue
			}
			mu.Lock()
			fmt.Fprintf(w, "R %s %s %s %s %d\n", f[1], f[0], from, f[2], time.Now().UnixNano())
			mu.Unlock()
		}
	}()
	t := time.NewTicker(every)
	for i := 0; i < n; i++ {
		now := time.Now()
		c.WriteToUDP([]byte(strconv.Itoa(i)), to)
		mu.Lock()
		fmt.Fprintf(w, "S %d %d\n", i, now.UnixNano())
		mu.Unlock()
		<-t.C
	}
	// Answers to the last datagrams may take a while on a loaded host.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	<-done
	mu.Lock()
	w.Flush()
	mu.Unlock()
}

func sink(port string) {
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, err := io.Copy(io.Discard, c)
	c.Close()
	fmt.Println(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func send(addr, bytes string) {
	n, err := strconv.ParseInt(bytes, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpsend: bad byte count")
		os.Exit(2)
	}
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64<<10)
	var sent int64
	for sent < n {
		m := int64(len(buf))
		if n-sent < m {
			m = n - sent
		}
		w, err := c.Write(buf[:m])
		sent += int64(w)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	fmt.Println(sent)
}
