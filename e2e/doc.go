// Package e2e holds roam's end-to-end tests: each builds its own network
// namespaces (package netlab), starts a real roamd built from this tree and
// drives it only with roamctl, then checks what the guests and the outside
// client see. They are privileged (TestPrivileged...) and skip, saying why,
// when not run as root or when a tool they need is missing.
package e2e
