/** @file
 * uvmqtt version and the export macro shared by every public header. */
#ifndef UVMQTT_VERSION_H
#define UVMQTT_VERSION_H

/** Major version of these headers (0 until the API is declared stable). */
#define UVMQTT_VERSION_MAJOR 0
/** Minor version of these headers. */
#define UVMQTT_VERSION_MINOR 2
/** Patch version of these headers. */
#define UVMQTT_VERSION_PATCH 0
/** The version of these headers as one number, 0xMMmmpp; compare it with
 * uvmqtt_version(), the version of the library linked. */
#define UVMQTT_VERSION_HEX                                                     \
  ((UVMQTT_VERSION_MAJOR << 16) | (UVMQTT_VERSION_MINOR << 8) |                \
   UVMQTT_VERSION_PATCH)

/** @def UVMQTT_EXTERN
 * Marks a public symbol. Public symbols are exported explicitly; the
 * libraries build with -fvisibility=hidden. */
#if defined(_WIN32)
#if defined(UVMQTT_BUILDING_SHARED)
#define UVMQTT_EXTERN __declspec(dllexport)
#elif defined(UVMQTT_USING_SHARED)
#define UVMQTT_EXTERN __declspec(dllimport)
#else
#define UVMQTT_EXTERN
#endif
#elif __GNUC__ >= 4
#define UVMQTT_EXTERN __attribute__((visibility("default")))
#else
#define UVMQTT_EXTERN
#endif

#ifdef __cplusplus
extern "C" {
#endif
/** UVMQTT_VERSION_HEX of the library actually linked. */
UVMQTT_EXTERN unsigned int uvmqtt_version(void);
/** "0.2.0" */
UVMQTT_EXTERN const char *uvmqtt_version_string(void);
#ifdef __cplusplus
}
#endif
#endif
