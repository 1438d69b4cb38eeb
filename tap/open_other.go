//go:build !linux

package tap

import "errors"

var errNotLinux = errors.New("only stream ports exist outside Linux")

func openTAP(Spec, Options) (Port, error)    { return nil, errNotLinux }
func openNetdev(Spec, Options) (Port, error) { return nil, errNotLinux }
func openTUN(Spec, Options) (Port, error)    { return nil, errNotLinux }
