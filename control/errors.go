package control

import (
	"fmt"

	"roam/api"
)

// Error is the typed error of every control operation (api.Error): Code is
// one of the Code* constants; Message names the field and the value that
// were wrong.
type Error = api.Error

// Error codes (see package api: they are part of the API).
const (
	CodeInvalidParameter    = api.CodeInvalidParameter
	CodeInvalidSubnet       = api.CodeInvalidSubnet
	CodeAddressInUse        = api.CodeAddressInUse
	CodeNotFound            = api.CodeNotFound
	CodeUnauthorized        = api.CodeUnauthorized
	CodeIncorrectState      = api.CodeIncorrectState
	CodeDependencyViolation = api.CodeDependencyViolation
	CodeAddressLimit        = api.CodeAddressLimit
	CodeDataPath            = api.CodeDataPath
	CodeInternal            = api.CodeInternal
	CodeConflict            = api.CodeConflict
)

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
	return &Error{Code: CodeInternal, Message: op + ": " + err.Error(), Cause: err}
}

// AsError converts any error to an *Error (InternalError for foreign ones).
func AsError(err error) *Error { return api.AsError(err) }
