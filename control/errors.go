package control

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes. They are part of the API: scripts match on them, so they
// never change meaning.
const (
	CodeInvalidParameter    = "InvalidParameter"     // a field is malformed or out of range
	CodeInvalidSubnet       = "InvalidSubnet"        // a CIDR is unusable or an address is outside every subnet
	CodeAddressInUse        = "AddressInUse"         // an address, device index or port is taken
	CodeNotFound            = "NotFound"             // no object with that id or name
	CodeUnauthorized        = "Unauthorized"         // the caller's uid may not do this
	CodeIncorrectState      = "IncorrectState"       // the object is not in a state that allows this
	CodeDependencyViolation = "DependencyViolation"  // other objects still use this one
	CodeAddressLimit        = "AddressLimitExceeded" // a pool or subnet has no free address
	CodeDataPath            = "DataPathRefused"      // the data path refused the new configuration
	CodeInternal            = "InternalError"        // the store or the host failed
)

// Sentinels for callers that test with errors.Is: every *Error unwraps to
// the sentinel of its code.
var (
	ErrInvalidParameter    = errors.New(CodeInvalidParameter)
	ErrInvalidSubnet       = errors.New(CodeInvalidSubnet)
	ErrAddressInUse        = errors.New(CodeAddressInUse)
	ErrNotFound            = errors.New(CodeNotFound)
	ErrUnauthorized        = errors.New(CodeUnauthorized)
	ErrIncorrectState      = errors.New(CodeIncorrectState)
	ErrDependencyViolation = errors.New(CodeDependencyViolation)
	ErrAddressLimit        = errors.New(CodeAddressLimit)
	ErrDataPath            = errors.New(CodeDataPath)
	ErrInternal            = errors.New(CodeInternal)
)

var sentinels = map[string]error{
	CodeInvalidParameter:    ErrInvalidParameter,
	CodeInvalidSubnet:       ErrInvalidSubnet,
	CodeAddressInUse:        ErrAddressInUse,
	CodeNotFound:            ErrNotFound,
	CodeUnauthorized:        ErrUnauthorized,
	CodeIncorrectState:      ErrIncorrectState,
	CodeDependencyViolation: ErrDependencyViolation,
	CodeAddressLimit:        ErrAddressLimit,
	CodeDataPath:            ErrDataPath,
	CodeInternal:            ErrInternal,
}

// Error is the typed error of every control operation. Code is one of the
// Code* constants; Message names the field and the value that were wrong.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	cause   error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the sentinel of the code and, when there is one, the
// underlying cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if s, ok := sentinels[e.Code]; ok {
		errs = append(errs, s)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// HTTPStatus is the status the API answers with for the error.
func (e *Error) HTTPStatus() int {
	switch e.Code {
	case CodeNotFound:
		return http.StatusNotFound
	case CodeUnauthorized:
		return http.StatusForbidden
	case CodeIncorrectState, CodeDependencyViolation, CodeAddressInUse:
		return http.StatusConflict
	case CodeInternal, CodeDataPath:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field string, value any, why string) *Error {
	return errorf(CodeInvalidParameter, "%s %q: %s", field, fmt.Sprint(value), why)
}

func notFound(kind, id string) *Error {
	return errorf(CodeNotFound, "%s %q does not exist", kind, id)
}

func internal(op string, err error) *Error {
	return &Error{Code: CodeInternal, Message: op + ": " + err.Error(), cause: err}
}

// AsError converts any error to an *Error (InternalError for foreign ones).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error(), cause: err}
}
