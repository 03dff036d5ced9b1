/* vkprompt.h: the C ABI of libvkprompt (prompt tuning of frozen T5 models on Vulkan).
 * Built by tools/build-native.sh; docs/embedding.md walks through it.
 * Every call returns one of the codes below and never throws; after an error, vkp_last_error()
 * says what went wrong on this thread. A call that fails leaves no half-made object (*out stays
 * NULL). A context, and every model and trainer made on it, is used from one thread at a time:
 * a call on another thread while one runs fails with VKP_ERROR_ARGUMENT. A handle the library did
 * not return, or one already destroyed, is VKP_ERROR_ARGUMENT, never a crash; a destroy call
 * (which returns nothing) sets vkp_last_error() when it refuses one. Destroy in reverse order of
 * making: trainers, then their model, then its context; a model or context with handles made
 * from it still open is not destroyed (vkp_last_error() says so). */
#ifndef VKPROMPT_H
#define VKPROMPT_H
#include <vulkan/vulkan.h>
#ifdef __cplusplus
extern "C" {
#endif

#define VKP_OK 0
#define VKP_NOT_READY 1              /* advance: slices remain; poll: the step's GPU work is not done */
#define VKP_ERROR_ARGUMENT (-1)      /* a bad argument or option; vkp_last_error() says which */
#define VKP_ERROR_DOES_NOT_FIT (-2)  /* the memory cap, the heap budget or the device's memory */
#define VKP_ERROR_DEVICE (-3)        /* missing feature or extension, device lost, driver error */
#define VKP_ERROR_FILE (-4)          /* a missing, unreadable or malformed file (model, data, prompt) */
typedef struct vkp_context vkp_context;
typedef struct vkp_model vkp_model;
typedef struct vkp_trainer vkp_trainer;
typedef struct vkp_host_device {
    uint32_t size;                                   /* sizeof(vkp_host_device) */
    PFN_vkGetInstanceProcAddr get_instance_proc_addr;
    VkInstance instance;
    VkPhysicalDevice physical_device;
    VkDevice device;
    uint32_t api_version;                            /* the apiVersion the host created its instance with */
    uint32_t queue_family_index;
    uint32_t queue_index;
    const char* const* enabled_device_extensions;
    uint32_t enabled_device_extension_count;
    const VkPhysicalDeviceFeatures2* enabled_features; /* the chain passed to vkCreateDevice; NULL: none */
    void (*lock_queue)(void* user);                  /* NULL: the queue is the library's alone */
    void (*unlock_queue)(void* user);
    void* user;
    uint64_t memory_cap_bytes;                       /* 0: no cap */
} vkp_host_device;
const char* vkp_last_error(void);                    /* this thread's last error, one line; "" if none. The library's
                                                        string, valid until this thread's next failing call: copy it to keep it; never vkp_free it */
int  vkp_context_adopt(const vkp_host_device* host, vkp_context** out);
int  vkp_context_create(const char* device_spec, vkp_context** out);   /* NULL = auto, as --device */
void vkp_context_destroy(vkp_context* ctx);         /* waits for the library's own work only; not while its models are open */
int  vkp_model_open2(vkp_context* ctx, const char* model_dir, const char* precision, const char* activations, vkp_model** out);
     /* precision: how the frozen weights are stored: NULL = auto, "fp32", "fp16", "bf16".
        activations: how each block's activations are stored between kernels, as `vkprompt train --activations`: "fp32", "bf16", "fp16"
        (16-bit ones need storageBuffer16BitAccess in the device's features: VKP_ERROR_DEVICE without it), or NULL = "auto", the
        device plan's choice: bf16 on GPUs with 16-bit storage, fp32 on CPU devices (`vkprompt devices --json`). NULL follows the
        C# API's default activations (PromptModel.Open's), so that they are stored alike whichever API opened the model (its
        weights: NULL here is auto, in C# precision: null); pass "fp32" for the
        results fp32 activations give (bf16 ones move log-likelihoods by up to 1e-3 + 2^-9 of themselves, docs/numerics.md).
        Any other string is VKP_ERROR_ARGUMENT. */
int  vkp_model_open(vkp_context* ctx, const char* model_dir, const char* precision, vkp_model** out);
     /* vkp_model_open2 with activations "fp32": the call hosts built before vkp_model_open2 use, whose results stay as they were */
void vkp_model_close(vkp_model* model);             /* not while its trainers are open */
int  vkp_score(vkp_model* model, const char* prompt_path, const char* jsonl, char** out_jsonl);
     /* jsonl: examples as JSON lines text; *out_jsonl: one line per example as `vkprompt score` prints; prompt_path NULL = no prompt */
int  vkp_trainer_create(vkp_model* model, const char* options_json, const char* train_jsonl, vkp_trainer** out);
     /* train_jsonl: the training examples as JSON lines text, as a --train file holds them; options: the `vkprompt train` options by their long names with '-' as '_', e.g.
        {"init":"file:p.safetensors","batch_size":3,"no_shuffle":true,"dropout":0,"lr":0.3,"seed":0}; unknown names are VKP_ERROR_ARGUMENT */
int  vkp_trainer_begin_step(vkp_trainer* t);
int  vkp_trainer_advance(vkp_trainer* t, double gpu_budget_ms, VkSemaphore* timeline, uint64_t* value);
     /* submits the next slice and returns at once; *timeline reaches *value when it completes;
        VKP_OK once the step's last slice is submitted, VKP_NOT_READY while slices remain */
int  vkp_trainer_poll(vkp_trainer* t, double* loss); /* never blocks: VKP_OK and the loss once the step is done */
int  vkp_trainer_step(vkp_trainer* t, double* loss); /* a whole step, blocking */
int  vkp_trainer_save_adapter(vkp_trainer* t, const char* dir); /* the PEFT adapter `vkprompt train` writes */
void vkp_trainer_destroy(vkp_trainer* t);
void vkp_free(void* p);                              /* for strings the library returned */

#ifdef __cplusplus
}
#endif
#endif
